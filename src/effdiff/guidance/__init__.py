"""Guidance without its double cost (issue 26): Model Guidance training (``model_guidance``,
``mg_train``), and training-free techniques that drop CFG's second evaluation where it adds nothing:
guidance interval (``interval``), adaptive guidance (``adaptive``) and the CFG cache (``cfg_cache``).
See docs/guidance.md."""
from . import adaptive, cfg_cache, interval  # noqa: F401,E402  (register the techniques)
