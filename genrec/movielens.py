"""Transitional: the old path of :mod:`genrec.data.movielens`.

Only bench/ and cli/bench.py still import it: another branch changes those files now. Remove this
module once they import from genrec.data (one rewrite after the merge).
"""

from genrec.data.movielens import load_movielens_folder, load_recbole, ml100k_dir, split_year

__all__ = ["load_movielens_folder", "load_recbole", "ml100k_dir", "split_year"]
