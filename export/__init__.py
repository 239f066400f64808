"""A trained student out into the world: :func:`export.exporter.export` writes a checked export directory in any
registered format (:mod:`export.targets`), :mod:`export.runtime` runs one without torch, :mod:`export.bench` times
them."""
