"""The data model: catalog items (:mod:`.item`)."""
