"""Tiny settings shared by tests: method overrides that step in well under a second, and a batch-norm randomiser."""

from __future__ import annotations

# Per-row overrides that shrink every method to something that steps in well under a second on a CPU.
TINY = {
    "simclr": dict(augment=dict(size=16, mean=[0.5], std=[0.25], blur_prob=0.5),
                   encoder=dict(arch="resnet18", in_channels=1, small_image_stem=True),
                   extract=dict(head_hidden=32, head_out=16)),
    "amdim": dict(augment=dict(size=32, mean=[0.5], std=[0.25]),
                  encoder=dict(in_channels=1, image_size=32, ndf=8, n_rkhs=32, depth=1)),
    "cpc_v2": dict(augment=dict(size=16, patch=8, overlap=4, mean=[0.5], std=[0.25], patch_colour="jitter"),
                   encoder=dict(arch="resnet50", layers=[1, 1, 1, 1], width_per_group=16, patch_size=8,
                                in_channels=1),
                   extract=dict(context_dim=32, target_dim=16, steps=2, n_context_layers=1)),
    "swav": dict(augment=dict(size=16, small_size=8, n_small=2, mean=[0.5], std=[0.25]),
                 encoder=dict(arch="resnet18", in_channels=1, small_image_stem=True),
                 extract=dict(head_hidden=32, head_out=16, n_prototypes=10, freeze_prototypes_epochs=0)),
    "moco_v2": dict(augment=dict(size=16, mean=[0.5], std=[0.25]),
                    encoder=dict(arch="resnet18", in_channels=1, small_image_stem=True),
                    extract=dict(head_hidden=32, head_out=16, queue_size=64)),
    "byol": dict(augment=dict(size=16, mean=[0.5], std=[0.25]),
                 encoder=dict(arch="resnet18", in_channels=1, small_image_stem=True),
                 extract=dict(projector_hidden=32, projector_out=16, predictor_hidden=32)),
    "yadim": dict(augment=dict(size=32, mean=[0.5], std=[0.25]),
                  encoder=dict(in_channels=1, image_size=32, ndf=8, n_rkhs=32, depth=1)),
}


def randomise_batch_norm(net):
    """Random batch-norm affine parameters and running statistics (so eval mode matters); returns ``net.eval()``."""
    import torch
    from torch import nn

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2.0)
    return net.eval()
