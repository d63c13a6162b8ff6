"""Optional adapters to other libraries. ``effdiff.integrations.diffusers`` (needs the
``diffusers`` extra) wraps diffusers UNets and transformers as effdiff denoisers and attaches
effdiff's caches to them. Nothing here is imported until used."""
