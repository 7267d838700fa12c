"""Who placed a point: the ``source`` an annotation file records beside each point.

A person's click, a click simulated from a mask (the mask answering for a person, as in the
active rounds and the scores from clicked points), or a sampler (points sampled by a strategy
carry the strategy's name, ``"uniform"`` for instance, or no source at all in older files).
The values are plain strings in the files, so that the editor, the active rounds and the
samplers agree on them without importing one another.
"""

from __future__ import annotations

PERSON = "person"
"""The source of a point a person placed or relabelled."""
SIMULATED = "simulated click"
"""The source of a click drawn from a mask instead of a person."""
