"""The analysis room: measurements about training rather than training itself.

``bias`` (the gradient bias of NCE with hard negatives: Section 3, Fig. 1, Appendix C), ``bias_probe`` (the same
measurement live, as a training callback) and ``precision`` (how exactly a reduced-precision score reproduces the
fp32 draw distribution).

May import every room below it (modeling, index, training) and the shared helpers; only recipes import it.
"""
