"""genrec's prompt templates, shipped inside the package as ``genrec.prompt_templates``."""
