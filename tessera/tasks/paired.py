"""Task `paired`: the model learns from the user's own pairs, a folder of damaged images
(`images:`) and one of their clean partners (`targets:`), matched by path.

The damage is in the data, not drawn: the patch stage cuts both images of a pair at the same
positions into one 6-channel patch (clean, then damaged; tessera.patches), which the training step
flips and turns as one, so the two sides stay aligned. Reconstruction and the baselines read the
damaged image and measure against its target; apply runs on damaged images alone.
"""

from tessera.tasks.registry import Task, register


@register("paired")
class Paired(Task):
    channels = 6  # the patch files already hold (clean, damaged): on_host hands them on as they are
    input_caption = "damaged input"
    input_word = "damaged"
    output_word = "restored"

    def describe(self, spec):
        return "each image learned against its partner in targets"
