"""torch.hub entry points, one per name in the zoo's weights registry (generated, never a hand-kept list).

Release entries (``moco_v2_imagenet``, ``swav_imagenet``, ...) are entry points too: the first call downloads the
publisher's file, checks it, converts it and caches it, as ``zoo.load_encoder`` does.

``torch.hub.load(REPO_DIR, "yadim", source="local")`` returns what ``zoo.load_encoder("yadim")`` returns;
dotted entry names use underscores (``yadim_fashion_mnist`` for ``yadim.fashion_mnist``). Every entry point
takes ``pretrained=True``; ``encoder(path)`` loads any exported folder or ``hf-hub:`` id.
"""

dependencies = ["torch", "torchvision", "safetensors", "timm", "huggingface_hub"]


def _entry_point(name: str, doc: str):
    def load(pretrained: bool = True):
        import zoo

        return zoo.load_encoder(name, pretrained=pretrained)

    load.__name__ = load.__qualname__ = name.replace(".", "_").replace("-", "_")
    load.__doc__ = doc
    return load


def _docstring(registry, name: str) -> str:
    """The card's facts: the method summary, the entry's prose, where the weights are, the measured results."""
    from zoo.pretrained.cards import shipped_prose

    entry = registry.get(name)
    alias = f"Default {entry.method} encoder: {entry.name}. " if name != entry.name else ""
    prose = shipped_prose(entry.name, entry.package_folder()) if entry.kind == "package" else ""
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(entry.metrics.items())) or "not measured"
    reported = entry.reported
    if reported:  # a release entry: its publisher's figure, and the licence it is bound by
        metrics += (f"; reported by its publisher: {reported['metric']} {reported['value']} ({reported['protocol']})"
                    f".\nLicence: {entry.license}")
    return (f"{alias}{entry.summary}\n\n{prose + chr(10) * 2 if prose else ''}Pre-trained on {entry.dataset}; "
            f"weights {entry.where()}.\nMeasured: {metrics}.\n\n"
            "Args:\n    pretrained: False gives the same architecture with random weights.")


def encoder(path: str):
    """A pretrained contrastive encoder from an exported folder or an ``hf-hub:ORG/NAME[@REV]`` id, in eval mode."""
    import zoo

    return zoo.load_encoder(path)


def _generate():
    from zoo.pretrained.weights_registry import open_registry

    registry = open_registry()
    for name in registry.names():
        fn = _entry_point(name, _docstring(registry, name))
        globals()[fn.__name__] = fn


_generate()
