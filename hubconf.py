"""torch.hub entry points, one per name in the zoo's weights registry (generated, never a hand-kept list).

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
    """The entry's one-line summary, where its weights are and its measured results (from its card's facts)."""
    entry = registry.get(name)
    alias = f"Default {entry.method} encoder: {entry.name}. " if name != entry.name else ""
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(entry.metrics.items())) or "not measured"
    return (f"{alias}{entry.summary}\n\nPre-trained on {entry.dataset}; weights {entry.where()}.\n"
            f"Measured: {metrics}.\n\nArgs:\n    pretrained: False gives the same architecture with random weights.")


def encoder(path: str):
    """A pretrained contrastive encoder from an exported folder or an ``hf-hub:ORG/NAME[@REV]`` id, in eval mode."""
    import zoo

    return zoo.load_encoder(path)


def _generate():
    from zoo.weights import open_registry

    registry = open_registry()
    for name in registry.names():
        fn = _entry_point(name, _docstring(registry, name))
        globals()[fn.__name__] = fn


_generate()
