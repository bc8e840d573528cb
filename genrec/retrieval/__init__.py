"""Retrievers behind one protocol (:mod:`.base`): a request's need -> scored candidates."""

from genrec.retrieval.base import Candidate, RetrievalQuery, Retriever
from genrec.retrieval.content import ContentRetriever

__all__ = ["Candidate", "ContentRetriever", "RetrievalQuery", "Retriever"]
