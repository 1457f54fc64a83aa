"""User-facing errors.

Anything the user can cause (a bad path, an unknown scheme name, a corpus too short for the
requested length) raises :class:`LexformerError`. The CLI prints its message on one line and
exits with code 2; library users catch it like any ``ValueError``.
"""


class LexformerError(ValueError):
    """An error caused by the user's input, with a message that says how to fix it."""


#: file suffixes that make ``owner/name`` a path the user meant, not a Hub id
_FILE_SUFFIXES = (".gguf", ".json", ".safetensors", ".pt", ".bin", ".txt", ".jsonl")


def hub_hint(spec: str) -> str:
    """For a missing path that reads like a Hugging Face Hub id (``owner/name``): how to get
    the folder, since lexformer never downloads a model from a hub; else ""."""
    parts = spec.split("/")
    if (len(parts) != 2 or not all(parts) or spec.startswith((".", "~"))
            or parts[1].lower().endswith(_FILE_SUFFIXES)):
        return ""
    return (f"; {spec!r} looks like a Hugging Face Hub id, and lexformer loads only local "
            f"model folders (it never downloads from a hub): fetch it yourself, e.g. "
            f"`hf download {spec} --local-dir {parts[1]}`, then pass --model {parts[1]}")
