"""Rebuild the embedded default dataset ``data/glossary_el`` (FOLDOC + Jargon File) from Debian's dictd files.

apt-get install -y dict-foldoc dict-jargon
python -m data_scripts.build_default            # == python -m data_scripts.dictd $(DEFAULT_ARGS)
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from . import dictd

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "data" / "glossary_el"
DEFAULT_ARGS = [
    "--dictd_dir", "/usr/share/dictd",
    "--glossaries", "foldoc", "jargon",
    "--max_mentions", "train=800", "val=400", "test=250",
    "--context_window", "128",
    "--seed", "0",
]  # fmt: skip
LICENCE_FILES = {"LICENSE-GFDL-1.2.txt": Path("/usr/share/common-licenses/GFDL-1.2")}

ATTRIBUTION = """# Attribution and licences

* **FOLDOC** — The Free On-line Dictionary of Computing, https://foldoc.org/, Editor Denis Howe.
  Copyright 1993 by Denis Howe. Permission is granted to copy, distribute and/or modify this document under the
  terms of the GNU Free Documentation License, Version 1.1 or any later version published by the Free Software
  Foundation; with no Invariant Sections, Front-Cover Texts or Back-Cover Texts. A copy of the licence (version
  1.2) is in `LICENSE-GFDL-1.2.txt`. Source: Debian package `dict-foldoc` (which also adds Dictionary.debian
  entries, Copyright (C) 2000-2004 Joey Hess and Robert D. Hilliard, verbatim-copy licence). The tables here are a
  modified version (cross-references turned into mention spans, whitespace normalized, entries sampled) and are
  distributed under the same GFDL terms.
* **The Jargon File** 4.4.7 (Eric S. Raymond et al.) is in the public domain. Source: Debian package
  `dict-jargon` ("The on-line hacker Jargon File, version 4.4.7, 29 Dec 2003").
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default=str(DEFAULT_DIR))
    args, extra = parser.parse_known_args(argv)
    dictd.main([*DEFAULT_ARGS, "--output_dir", os.path.relpath(args.output_dir), *extra])
    output_dir = Path(args.output_dir)
    (output_dir / "ATTRIBUTION.md").write_text(ATTRIBUTION)
    for name, source in LICENCE_FILES.items():
        if source.exists():
            shutil.copyfile(source, output_dir / name)
    with open(output_dir / "README.md", "a", encoding="utf-8") as card:
        card.write(
            "\n## Licence\n\nFOLDOC text: GFDL 1.1+ (see `ATTRIBUTION.md`, `LICENSE-GFDL-1.2.txt`); "
            "Jargon File text: public domain.\n"
        )


if __name__ == "__main__":
    main()
