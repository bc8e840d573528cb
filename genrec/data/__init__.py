"""The data model and every loader: catalog items (:mod:`.item`), catalog files
(:mod:`.catalog_files`: JSONL, CSV, the packaged datasets), MovieLens (:mod:`.movielens`),
interaction logs (:mod:`.interactions`: the ``Interaction`` type and its rows;
:mod:`.log_columns`: the same log as arrays, for training)."""
