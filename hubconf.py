"""torch.hub entry points: ``torch.hub.load(REPO_DIR, "encoder", path=..., source="local")``.

Named entry points generated from the weights registry come with the zoo's published weights.
"""

dependencies = ["torch", "torchvision", "safetensors", "timm"]


def encoder(path: str):
    """A pretrained contrastive encoder from an exported folder (model.safetensors + config.json), in eval mode."""
    import zoo

    return zoo.load_encoder(path)
