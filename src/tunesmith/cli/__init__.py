"""The thin command line on top of tunesmith.pipelines."""
