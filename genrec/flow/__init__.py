"""The stages of one request, in the order the Recommender (genrec.recommender) runs them:

- :mod:`.plan`: the request validated against settings, templates and retrievers (no I/O);
- :mod:`.candidates`: the user's stored state joins it, the history is resolved once, the
  retriever is chosen once and asked, and its scores become each candidate's evidence;
- :mod:`.prompt`: the one place a request's prompt is rendered (the mode re-renders through it);
- :mod:`.result`: the grounded picks, scores and timings become the Recommendation's items.

Decoding and grounding are the mode's (genrec.modes); fusion is genrec.modes.fusion.
"""
