"""Data-parallel distillation: one DDP wrapper per trained network instead of one around the module.

A distillation iteration runs two backward passes over disjoint sets of parameters: the student step
(the student's synthesis network; the discriminator is frozen and only carries gradients back to the
image) and the discriminator step (the discriminator; the student's image is detached), plus R1 every
few steps. Lightning's ``ddp`` wraps the whole LightningModule in one ``DistributedDataParallel``, which
expects a gradient for every parameter in every backward pass: the first step fails with "parameters
that were not used in producing the loss". ``ddp_find_unused_parameters_true`` makes it run by walking
the autograd graph after every forward to find the parameters a pass does not reach.

:class:`NetworkDDPStrategy` wraps each trained network on its own (the student's synthesis network and
the discriminator). Each wrapper then sees every one of its parameters used in the backward pass that
concerns it, so no graph search is needed (``find_unused_parameters=False``), and a step all-reduces only
the gradients it produced. The LightningModule's ``state_dict`` is unchanged: the wrappers are held
outside its module tree (``DistillationModule.wrap_networks``). Buffers are not re-broadcast before every
forward (``forward_sync_buffers=False``): every buffer of both networks is constant during training, and
DDP copies rank 0's parameters and buffers to every rank when it wraps them.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import DDPStrategy


class NetworkDDPStrategy(DDPStrategy):
    """Lightning's DDP strategy (launch, process group, reductions, checkpoint I/O on rank 0), with the
    networks wrapped separately. The LightningModule must implement ``wrap_networks(wrap)`` and
    ``unwrap_networks()``; ``wrap(module)`` returns the ``DistributedDataParallel`` wrapper.

    Args:
        **kwargs: As for ``lightning.pytorch.strategies.DDPStrategy``; the remaining keyword arguments go to
            every ``DistributedDataParallel`` (``forward_sync_buffers`` defaults to False here).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("forward_sync_buffers", False)
        super().__init__(**kwargs)

    def configure_ddp(self) -> None:
        module = self.lightning_module
        if not hasattr(module, "wrap_networks"):
            raise TypeError(
                f"{type(self).__name__} needs a LightningModule with wrap_networks(wrap), got {type(module).__name__}"
            )
        module.wrap_networks(self._setup_model)

    def teardown(self) -> None:
        module = self.lightning_module
        if module is not None and hasattr(module, "unwrap_networks"):
            module.unwrap_networks()
        super().teardown()


__all__ = ["NetworkDDPStrategy"]
