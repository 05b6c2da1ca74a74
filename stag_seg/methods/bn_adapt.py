"""BN-adapt ("BN Stats Adapt" in CoTTA's tables; Schneider et al., NeurIPS 2020; Nado et al.,
2020): BatchNorm with the test batch's statistics, no gradient step."""
from __future__ import annotations

from torch import nn

from stag_seg.methods.base import TTAMethod
from stag_seg.methods.norm import use_test_batch_statistics
from stag_seg.registry import TTA_METHODS
from stag_seg.step.learner import Learner


@TTA_METHODS.register_module(name='bn-adapt')
class BNAdapt(TTAMethod):
    """Every BatchNorm normalises with the test batch's statistics; nothing else changes.

    No parameter is updated and the running statistics stay the source's, so the method keeps
    no state and every round scores the same. Where a batch has one value per channel (e.g. a
    global-pooling branch such as DeepLabV3+'s ASPP image pool at batch size 1) a layer keeps
    the source statistics, as in TENT (:func:`~stag_seg.methods.norm.use_test_batch_statistics`).
    LayerNorm and GroupNorm already normalise per sample, so LayerNorm models are unchanged
    by it: on SegFormer only the decode head's fusion BatchNorm changes (the MiT backbone
    has none). It takes no gradient step, so plug-ins such as STAG are refused with it.
    """

    updates = False

    def configure_model(self, model: nn.Module) -> None:
        super().configure_model(model)
        self.num_batch_norms = use_test_batch_statistics(model)

    def setup(self, learner: Learner) -> None:
        if self.num_batch_norms == 0:
            learner.logger.warning('bn-adapt: the model has no BatchNorm layer, so its '
                                   'predictions are the source model\'s')
        else:
            learner.logger.info(f'bn-adapt: {self.num_batch_norms} BatchNorm layer(s) '
                                'normalise with test-batch statistics')
