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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import jax

MJX_EXTRA_HINT = "install the MJX extra: pip install 'neuromimic[mjx]'"

# Where JAX keeps compiled programs between runs, unless the user chose a place (JAX's own
# ``jax_compilation_cache_dir`` / ``JAX_COMPILATION_CACHE_DIR``). ``NEUROMIMIC_JAX_CACHE``
# overrides it; an empty value turns the cache off.
JAX_CACHE_VARIABLE = "NEUROMIMIC_JAX_CACHE"


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
    _use_compilation_cache(jax)
    return jax


def jax_cache_dir() -> str | None:
    """The folder where MJX's compiled programs are kept between runs: ``$NEUROMIMIC_JAX_CACHE``
    if set (empty: no cache), else ``$XDG_CACHE_HOME/neuromimic/jax`` (``~/.cache/...``)."""
    if JAX_CACHE_VARIABLE in os.environ:
        return os.environ[JAX_CACHE_VARIABLE] or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "neuromimic", "jax")


def _use_compilation_cache(jax: Any) -> None:
    """Keep XLA's compiled programs on disk (JAX's persistent compilation cache), as MuJoCo
    Warp keeps its kernels: a body's step compiles in tens of seconds to minutes on a CPU
    (the mouse's step about 20 s, the rat's minutes) and is then loaded in well under a
    second by the next run with the same body, batch and substeps. Leaves the setting alone
    when the user configured JAX's cache themselves."""
    if jax.config.jax_compilation_cache_dir:
        return
    folder = jax_cache_dir()
    if folder is not None:
        jax.config.update("jax_compilation_cache_dir", folder)


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
    tensor = tensor.detach()
    device = tensor.__dlpack_device__()
    importer = _IMPORTERS.get(device)
    if importer is None:
        importer = _IMPORTERS[device] = _importer(device)
    return importer(tensor)


#: DLPack device ``(type, id)`` -> the function that imports a tensor of it (`_importer`).
_IMPORTERS: dict[tuple[int, int], Callable[[torch.Tensor], Any]] = {}


def _importer(dlpack_device: tuple[int, int]) -> Callable[[torch.Tensor], Any]:
    """``tensor -> jax.Array`` for tensors on one DLPack device.

    ``jax.dlpack.from_dlpack`` costs about 30 us of host time per tensor (on the CPU it
    looks up the device and asks it for a stream, which raises and catches an error, at
    every call); the backends hand JAX two tensors or more per step. This does the same
    import (jaxlib's ``dlpack_managed_tensor_to_buffer``, the call ``from_dlpack`` ends
    in) with the device and stream looked up once: about 6 us. It falls back to
    ``from_dlpack`` for dtypes JAX would convert (64-bit ones without x64), on any error,
    and where the jaxlib function has another signature than the one of jaxlib 0.10.
    """
    jax = import_jax()
    public = jax.dlpack.from_dlpack
    try:
        from jax._src import dtypes, xla_bridge
        from jax._src.dlpack import _DL_DEVICE_TO_PLATFORM
        from jax._src.lib import _jax, jaxlib_extension_version
        from jax._src.typing import DLDeviceType

        if jaxlib_extension_version < 467:
            return public
        device_type, device_id = dlpack_device
        device = xla_bridge.get_backend(_DL_DEVICE_TO_PLATFORM[device_type]).device_from_local_hardware_id(device_id)
        try:
            pinned = device_type == DLDeviceType.kDLCUDAHost  # torch's CPU export takes no stream
            stream = None if device.platform == "cpu" or pinned else device.get_stream_for_external_ready_events()
        except _jax.JaxRuntimeError:  # UNIMPLEMENTED on this platform
            stream = None
        to_buffer, kind = _jax.dlpack_managed_tensor_to_buffer, int(device_type)
    except Exception:  # noqa: BLE001 (another jax: its public path)
        return public

    def import_tensor(tensor: torch.Tensor) -> Any:
        try:
            array = to_buffer(tensor.__dlpack__(stream=stream), device, stream, None, kind)
        except Exception:  # noqa: BLE001 (let the public path raise or copy)
            return public(tensor)
        if dtypes.canonicalize_dtype(array.dtype) != array.dtype:
            return public(tensor)
        return array

    return import_tensor


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
