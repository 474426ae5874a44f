"""Zero-copy exchange of arrays between torch and JAX through DLPack.

This is the only module of neuromimic that speaks DLPack. Both directions share memory:

- `torch_to_jax` hands a torch tensor to JAX without a copy, so the tensor must not be
  written while a JAX computation that reads it may still run (JAX dispatches
  asynchronously). Backends therefore only pass tensors they own or that they have just
  made contiguous / cast themselves.
- `jax_to_torch` wraps a JAX buffer as a torch tensor. JAX arrays are immutable: the
  tensor must be treated as read-only; writing into it changes the JAX array behind JAX's
  back.

JAX is imported lazily (it is the optional ``mjx`` extra).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import jax

MJX_EXTRA_HINT = "install the MJX extra: pip install 'neuromimic[mjx]'"


def import_jax() -> Any:
    """Import and return the ``jax`` module, without preallocating accelerator memory.

    Sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (unless the user set it) before the first
    import, so JAX does not reserve most of the GPU memory that torch also needs.

    Raises:
        ImportError: if JAX is not installed; the message names the extra to install.
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
    except ImportError as error:
        raise ImportError(f"the 'mjx' physics backend needs JAX; {MJX_EXTRA_HINT}") from error
    return jax


def torch_to_jax(tensor: torch.Tensor) -> jax.Array:
    """Share a torch tensor with JAX, without copying.

    Args:
        tensor: any shape and dtype supported by DLPack; must be contiguous (strided
            tensors are rejected rather than silently copied).

    Returns:
        A JAX array on the matching device that aliases ``tensor``'s memory.

    Raises:
        ValueError: if ``tensor`` is not contiguous.
    """
    if not tensor.is_contiguous():
        raise ValueError(
            f"torch_to_jax needs a contiguous tensor (got strides {tensor.stride()} for shape "
            f"{tuple(tensor.shape)}); call .contiguous() first, which copies"
        )
    jax = import_jax()
    return jax.dlpack.from_dlpack(tensor.detach())


def jax_to_torch(array: jax.Array) -> torch.Tensor:
    """Wrap a JAX array as a torch tensor, without copying.

    Args:
        array: a JAX array of any shape.

    Returns:
        A torch tensor on the matching device aliasing ``array``'s buffer (read-only by
        contract: JAX arrays are immutable). The tensor keeps the buffer alive.
    """
    return torch.from_dlpack(array)


def buffer_pointer(array: jax.Array) -> int:
    """Address of a JAX array's device buffer (for zero-copy checks)."""
    return array.unsafe_buffer_pointer()
