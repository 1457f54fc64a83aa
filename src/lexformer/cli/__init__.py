"""``lexformer`` command line: a thin layer over the library's typed functions.

One module per subcommand, each with ``add_parser(subparsers)`` that sets ``handler``; this
module registers them and turns every user error into one line and exit code 2:
``lexformer: error: ...``; nothing already on disk is overwritten.
"""

from __future__ import annotations

import argparse
import errno
import sys

from ..errors import LexformerError
from . import analyze, export, extend, generate, lm_eval, reproduce, train
from . import eval as eval_cmd
from .options import OneLineErrorParser

#: the subcommands, in the order ``--help`` lists them
SUBCOMMANDS = (train, eval_cmd, generate, reproduce, analyze, extend, export, lm_eval)

EXAMPLES = """\
examples:
  lexformer reproduce                       # the paper's experiment, ~70 min on 2 CPU cores
  lexformer reproduce --preset smoke --out runs/smoke   # the same pipeline in ~15 s
  lexformer train --preset tiny --position xpos --out runs/xpos
  torchrun --nproc_per_node=2 -m lexformer train --preset smoke --out runs/ddp
  lexformer eval --model runs/xpos --lengths 64,128,256,512,1024 --attention full,blockwise
  lexformer eval --model runs/xpos --task position-loss,copy --json runs/xpos/context.json
  lexformer eval --model smollm2 --attention full,blockwise,yarn --lengths 2048,8192 --max-docs 1
  lexformer extend --model smollm2 --out runs/extend   # length-extension methods on SmolLM2-135M
  lexformer analyze --checkpoint runs/xpos --out runs/xpos/analysis
  lexformer generate --checkpoint runs/xpos --prompt "ROMEO." --max-new-tokens 200
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="lexformer",
        description="Length-extrapolatable Transformers (XPOS + blockwise causal attention): "
                    "train at length L, evaluate far beyond it, and reproduce the paper.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"lexformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


#: OS errors a user's environment causes (rights, a full disk, a path that is a file or a
#: folder where the other was needed): one line, not a traceback. Others are bugs.
USER_OS_ERRORS = frozenset({
    errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EISDIR,
    errno.ENOTDIR, errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG,
})


def describe_os_error(e: OSError) -> str:
    """``cannot access runs/x/model.safetensors: No space left on device``."""
    where = f" {e.filename}" if e.filename else ""
    return f"cannot access{where}: {e.strerror or e}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lm-eval"]:  # every later argument is lm-eval's, options included
        args = argparse.Namespace(command="lm-eval", handler=lm_eval.run, args=argv[1:])
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from ..progress import quiet_library_bars

    # transformers' own bars ("Loading weights") follow --no-progress and a non-terminal too
    quiet_library_bars(not getattr(args, "no_progress", False))
    try:
        return args.handler(args) or 0
    except LexformerError as e:
        print(f"lexformer: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in USER_OS_ERRORS:
            raise
        print(f"lexformer: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lexformer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
