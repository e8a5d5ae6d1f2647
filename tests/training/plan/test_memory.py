"""``training.plan.memory``: what a check needs, counted on the meta device before anything is built."""

import torch

from training.plan.memory import BACKWARD_FACTOR, BASE, memory_need, saved_activation_bytes

SMALL = "training/recipes/yadim/fashion_mnist.yaml"


class TwoLayers(torch.nn.Module):
    """x -> Linear(10, 20) -> ReLU -> Linear(20, 1) -> sum, with the step's name a check calls."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(10, 20), torch.nn.Linear(20, 1)

    def loss_of_views(self, views):
        return self.b(torch.relu(self.a(views[0]))).sum()


def test_saved_activations_are_counted_once_per_storage_without_the_weights():
    # by hand, batch 4 in fp32: the first product keeps its input x (4 x 10) for its weight's gradient, ReLU
    # keeps its output (4 x 20), and the second product keeps that same output (one storage, counted once);
    # the weights' transposes they keep are views of parameters, left out
    module = TwoLayers().to("meta")
    assert saved_activation_bytes(module, [torch.empty(4, 10, device="meta")]) == 4 * (4 * 10 + 4 * 20)


def test_no_grad_saves_nothing():
    class Frozen(TwoLayers):
        def loss_of_views(self, views):
            with torch.no_grad():
                return super().loss_of_views(views)

    assert saved_activation_bytes(Frozen().to("meta"), [torch.empty(4, 10, device="meta")]) == 0


def test_the_need_of_a_recipe_adds_up_from_its_module():
    from training.plan.recipe import load_recipe

    need = memory_need(SMALL)
    module = load_recipe(SMALL, device="meta").module
    params = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert module.hparams.optimizer == "adam"
    assert (need.parameters, need.weights, need.gradients) == (params, 4 * params, 4 * trainable)
    assert need.optimizer_state == 2 * 4 * trainable  # Adam's two moments
    assert need.saved_activations > 0 and need.backward == int(BACKWARD_FACTOR * need.saved_activations)
    assert need.base == BASE
    assert need.total == sum(v for k, v in need.to_dict().items() if k not in ("parameters", "total"))


def test_plan_repeats_its_activation_memory_and_agrees_with_check_recipes_count():
    """One memory model: three plans give the same figure (it is counted, not measured), and the plan's line in
    the batch gives, at check-recipe's batch, the activations check-recipe counts (to 10%; here exactly)."""
    from training.plan.command import plan
    from training.plan.recipe import load_recipe, smallest_batch

    recipe = "training/recipes/moco_v2/cifar10.yaml"  # a queue: memory a step holds whatever its batch
    figures = [plan(recipe)["activation_memory"] for _ in range(3)]
    per_image = [f["bytes_per_image"] for f in figures]
    assert max(per_image) - min(per_image) <= 0.02 * min(per_image)
    need = memory_need(recipe)
    batch = smallest_batch(load_recipe(recipe, dataset_images=1).module)
    line = figures[0]["bytes_per_image"] * batch + figures[0]["bytes_per_step"]
    counted = need.saved_activations + need.backward
    assert figures[0]["batches"][0] == batch and abs(line - counted) <= 0.10 * counted
    assert figures[0]["bytes_per_step"] > 0  # the queue's logits do not grow with the batch
