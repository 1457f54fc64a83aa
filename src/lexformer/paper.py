"""The paper's reported numbers (arXiv 2212.10554, trained at L = 1024), for side-by-side
display only. They are quoted, never presented as measured."""

PAPER_TRAIN_LENGTH = 1024

#: Table 2: perplexity by evaluation length. LeX = XPOS + blockwise causal attention.
TABLE2 = {
    "absolute": {256: 46.34, 512: 36.39, 1024: 29.94, 2048: 132.63, 4096: 1283.79},
    "alibi": {256: 37.66, 512: 29.92, 1024: 24.99, 2048: 23.14, 4096: 24.26},
    "rope": {256: 38.09, 512: 30.38, 1024: 25.52, 2048: 73.6, 4096: 294.45},
    "xpos+blockwise (LeX)": {256: 34.3, 512: 27.55, 1024: 23.31, 2048: 21.6, 4096: 20.73},
}

#: Table 3: attention resolution at 1024 / 2048 (the paper's unstated normalisation).
TABLE3 = {
    "absolute": (0.87, 0.28),
    "alibi": (0.81, 0.88),
    "rope": (0.91, 0.08),
    "xpos+blockwise (LeX)": (0.98, 1.08),
    "xpos (no BCA)": (0.98, 0.54),
}

#: Table 5: perplexity at 2048 / 4096, each scheme with and without blockwise attention.
TABLE5 = {
    ("rope", "full"): (73.6, 294.45),
    ("rope", "blockwise"): (25.57, 25.65),
    ("alibi", "full"): (23.14, 24.26),
    ("alibi", "blockwise"): (24.6, 25.37),
    ("xpos", "full"): (22.56, 28.43),
    ("xpos", "blockwise"): (21.6, 20.73),
}

#: Table 2 keyed by (scheme, attention): the paper's baselines use full attention, LeX is
#: XPOS with blockwise attention.
TABLE2_BY_LABEL = {
    ("absolute", "full"): TABLE2["absolute"],
    ("alibi", "full"): TABLE2["alibi"],
    ("rope", "full"): TABLE2["rope"],
    ("xpos", "blockwise"): TABLE2["xpos+blockwise (LeX)"],
}
