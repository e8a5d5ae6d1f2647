"""The pretrained zoo: loading, exporting and describing trained encoders (no training code, no Lightning).

- ``api``: ``load_encoder``, ``list_encoders``, ``get_card``, ``eval_transform`` (re-exported by ``zoo``);
- ``exported``: the exported folder format (``config.json`` + ``model.safetensors`` + ``README.md``);
- ``weights_registry``: the weights registry (``WeightsRegistry``, ``zoo/_weights/registry.json``), which names
  every published encoder, where its files are, their sha256 and their licence;
- ``sources``: where an entry's files are read from (package folder, Hugging Face Hub, local directory hub);
- ``local_hub``: a local directory hub, one git repository per model;
- ``cards``: model cards rendered from ``card_templates/``.

Not to be confused with the part registries of ``zoo.part_registry`` (``PartRegistry``), which map part names
to factories.
"""
