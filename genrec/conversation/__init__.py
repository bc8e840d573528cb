"""A chat conversation -> one RecommendRequest.

- The last user message is the query.
- Items named earlier join the history (oldest first): titles or `id:` references in user turns,
  and the numbered lists of genrec's own earlier answers (`N. Title [id: ID]`, or their JSON form).
- Ordinal references in a user message ("the second one", "#2", "the first two", "the last one")
  point into the list of the answer before it (so do its items named by title); in the last
  message they are rewritten into titles in the query. Only the items picked join the history: the
  rest of that answer is excluded, not repeated. An answer the user did not pick from joins the
  history whole. A reference after a negation ("not the first one", "except #3") excludes the item.
- "newer" / "older" in the last message, next to items it points at, narrows to items with a
  later / earlier `year` attribute than theirs.
- System and developer messages reach the prompt only through the request's `system` slot; they
  never change what may be recommended (candidates always come from the catalog index).

Plain data in, a request out: no HTTP here (the server maps OpenAI's wire format onto
`Conversation`). The catalog lookups are sync (Chroma and the embedder), so a server runs
`map_conversation` in a worker thread::

    mapped = map_conversation(Conversation([Message("user", "more like Heat")]), index)
    mapped.request  # query "more like Heat", history [Heat's ID], the rest as the caller set it
"""

from genrec.conversation.answers import Listed, parse_answer
from genrec.conversation.mapping import Conversation, Mapped, Message, map_conversation
from genrec.conversation.mentions import CatalogLookup, display_title, items_named
from genrec.conversation.references import Reference, find_references

__all__ = [
    "CatalogLookup",
    "Conversation",
    "Listed",
    "Mapped",
    "Message",
    "Reference",
    "display_title",
    "find_references",
    "items_named",
    "map_conversation",
    "parse_answer",
]
