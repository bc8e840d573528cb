"""Learning from interactions: the models (:mod:`.collaborative`, :mod:`.sequential`), their
metrics (:mod:`.metrics`), what they train on (:mod:`.data`), the bundles they are saved in
(:mod:`.artifacts`) and ``genrec train`` itself (:mod:`.train`)."""
