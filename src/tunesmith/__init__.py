"""tunesmith: finetune a model on your examples, measured against its baseline.

Library first: everything the CLI does is an importable function (see ``tunesmith.pipelines``).
This package imports nothing heavy at import time.
"""

__version__ = "0.1.0"
