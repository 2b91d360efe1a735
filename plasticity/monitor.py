"""Monitor: plasticity metrics of a whole network from one forward pass, for TensorBoard.

    mon = pl.Monitor(model, tau=0.025)        # finds the activation modules, records theta_0
    ...
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    if updates % 1000 == 0:
        stats = mon.measure(batch)            # dict of floats, keys below
        mon.log(writer, step)                 # writer: anything with add_scalar/add_histogram

What is measured
----------------
The activations are read from the traced forward pass (`plasticity.structure`, the same
structure the interventions read): every call of an activation module (the built-ins of
`plasticity.layers.ACTIVATIONS`, or any module with ``is_activation = True``: AdaLin,
CReLU, your own) and every functional activation (``F.relu``, ``torch.tanh``,
``x.relu()``, ...), in forward order. Their *outputs* are measured, so a Linear ->
LayerNorm -> ReLU network is measured after its normalisation. A module called several
times in one forward pass gives one layer per call: ``act``, ``act#2``, ...; a functional
activation is named after the layer it follows and its function, e.g. ``fc1.relu``. A
model that does not trace is refused at construction; ``layers=`` (activation modules by
name) then measures those modules with forward hooks instead. When a submodule is replaced
after the Monitor was built (plasticity injection), the next `measure` reads the structure
again.

Activity is classified by the activation's *function*: an AdaLin counts as its base φ (a
tanh-based AdaLin is saturating and reports ``saturated_ratio``), so two networks that
compute the same function report the same statistics. AdaLin layers add their own
``plasticity/adalin_alpha_mean/<layer>`` and ``plasticity/adalin_alpha_abs_mean/<layer>``
(mean α and mean |α| of the layer's slopes).

``measure`` returns (and keeps in ``.stats``), with ``<layer>`` an activation name:

- ``plasticity/dormant_ratio``, ``plasticity/dormant_ratio/<layer>``: ReDo-dormant units
  (score <= tau); the overall ratio is dormant units / all units of all layers.
- ``plasticity/dead_ratio``, ``plasticity/dead_ratio/<layer>``: the same at tau = 0.
- ``plasticity/active_units``, ``plasticity/active_units/<layer>``: fraction of (unit,
  input, position) entries that are active: output > 0 for rectifiers, not saturated for
  tanh/sigmoid-like layers (see `plasticity.metrics`); overall = mean over all units.
- ``plasticity/saturated_ratio``, ``plasticity/saturated_ratio/<layer>`` (only when the
  network has saturating layers): units saturated on every input. Dormancy scores miss
  these units (they are large but carry no gradient), so read both for tanh networks.
- ``plasticity/effective_rank``, ``plasticity/srank``, ``plasticity/feature_norm``: of the
  penultimate features, the output of the last activation called in the forward pass (or
  of ``feature_layer``), flattened to (B, D).
- ``plasticity/weight_norm``: norm of all parameters; ``plasticity/weight_norm/<layer>``
  per Linear/Conv layer (its weight and bias; `plasticity.layers.weight_layers`), named by
  module.
- ``plasticity/weight_distance_from_init``: ||theta - theta_0||, theta_0 copied when the
  Monitor is built or by `reset_reference` (parameters added later are ignored).
- ``plasticity/grad_norm``: norm of the parameters' current ``.grad``, omitted when none
  has one. Call `measure` after ``backward()`` (after ``optimizer.step()`` is fine: the
  gradients stay until the next ``zero_grad``); the value is of the gradient the optimizer
  used, after any clipping done in place.

The measurement runs under ``torch.no_grad()`` in eval mode (restored afterwards, so
BatchNorm statistics are not updated and dropout is off) with forward hooks that exist only
during `measure`: parameters, buffers, ``.grad`` and later outputs are untouched. Per-layer
reductions happen inside the hooks on the model's device, and all results reach the host in
one transfer. A ``torch.compile``-d model is measured through its eager original
(``_orig_mod``) so that hooks cause no recompilation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from plasticity import metrics
from plasticity.base import call_module
from plasticity.structure import Structure, saturation_bounds

Tensor = torch.Tensor

__all__ = ["Monitor", "saturation_bounds"]


class Monitor:
    """Plasticity metrics of ``model`` on a batch; see the module docstring for the keys.

    Args:
        model: the network (its forward is called as ``model(batch)`` or ``model(*batch)``).
        tau: ReDo dormancy threshold on the normalised score.
        layers: activation modules to measure (names in ``named_modules`` or the modules
            themselves) instead of the automatic search.
        histogram_every: `log` writes per-layer neuron-score histograms on every n-th call
            (the first included); 0 writes them only when asked (``histograms=True``).
        feature_layer: name of the module whose output is the feature matrix for the ranks
            and the feature norm; default: the last activation called.
        saturation_threshold: a tanh/sigmoid output is saturated when, rescaled to
            [-1, 1], its magnitude is at least this.
        srank_delta: delta of srank.
        eval_mode: measure in eval mode (restored afterwards); False keeps the current mode.
    """

    def __init__(
        self,
        model: nn.Module,
        tau: float = 0.025,
        layers: Sequence[str | nn.Module] | None = None,
        histogram_every: int = 0,
        feature_layer: str | None = None,
        saturation_threshold: float = 0.99,
        srank_delta: float = 0.01,
        eval_mode: bool = True,
    ) -> None:
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        if histogram_every < 0:
            raise ValueError(f"histogram_every must be >= 0, got {histogram_every}")
        self.model: nn.Module = getattr(model, "_orig_mod", model)
        self.tau = tau
        self.histogram_every = histogram_every
        self.saturation_threshold = saturation_threshold
        self.srank_delta = srank_delta
        self.eval_mode = eval_mode
        self.structure: Structure | None = None
        if layers is not None:
            self.layers = self._resolve(layers)
        else:
            self._read_structure()
        self.adalins = [(n, m) for n, m in self.model.named_modules()
                        if getattr(m, "is_activation", False) is True and isinstance(getattr(m, "alpha", None), Tensor)]
        self.feature_layer = feature_layer
        self._feature_module: nn.Module | None = None
        if feature_layer is not None:
            named = dict(self.model.named_modules())
            if feature_layer not in named:
                raise ValueError(f"feature_layer {feature_layer!r} is not a module of the model")
            self._feature_module = named[feature_layer]
        self.reference: dict[str, Tensor] = metrics.snapshot(self.model)
        #: the last measured statistics (tag -> value)
        self.stats: dict[str, float] = {}
        #: the last measured ReDo scores per activation layer (name -> CPU tensor)
        self.scores: dict[str, Tensor] = {}
        self._log_calls = 0

    def _resolve(self, layers: Sequence[str | nn.Module]) -> list[tuple[str, nn.Module]]:
        named = dict(self.model.named_modules())
        names = {id(m): n for n, m in self.model.named_modules()}
        out = []
        for layer in layers:
            if isinstance(layer, nn.Module):
                if id(layer) not in names:
                    raise ValueError(f"layer {type(layer).__name__} is not a module of the model")
                out.append((names[id(layer)], layer))
            elif layer in named:
                out.append((layer, named[layer]))
            else:
                raise ValueError(f"layer {layer!r} is not a module of the model; "
                                 f"valid names: {[n for n in named if n]}")
        return out

    def _read_structure(self) -> None:
        """Trace the model and name its activation calls (refused when it does not trace)."""
        self.structure = Structure(self.model, "monitor",
                                   "layers=['act1', ...] names the activation modules to measure")
        self._nodes = self.structure.activation_nodes()
        self.layers = self._node_names(self._nodes)

    def _node_names(self, nodes: list[Any]) -> list[tuple[str, nn.Module | None]]:
        st = self.structure
        calls: dict[str, int] = {}
        out = []
        for node in nodes:
            module = st.module_of(node)
            if module is not None:
                base = node.target  # a submodule's qualified name, never empty
            else:
                producer = st.producer_layer(node)
                fn = getattr(node.target, "__name__", str(node.target))
                base = f"{st.name(producer)}.{fn}" if producer is not None else node.name
            calls[base] = calls.get(base, 0) + 1
            out.append((base if calls[base] == 1 else f"{base}#{calls[base]}", module))
        return out

    def reset_reference(self) -> None:
        """Record the current parameters as theta_0 for the distance from initialisation."""
        self.reference = metrics.snapshot(self.model)

    # ------------------------------------------------------------------ measuring
    def measure(self, batch: Any) -> dict[str, float]:
        """One forward pass on ``batch`` (a tensor or a tuple of positional arguments);
        returns the statistics and keeps them (and the neuron scores) for `log`."""
        if self.structure is not None:
            return self._measure_traced(batch)
        layer_stats: list[tuple[str, dict[str, Tensor]]] = []
        features: list[Tensor] = []
        calls: dict[str, int] = {}

        def on_output(name: str, bounds: tuple[float, float] | None, measured: bool,
                      is_features: bool) -> Callable[[nn.Module, Any, Any], None]:
            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                if not isinstance(output, Tensor) or output.dim() < 2:
                    return
                if measured:
                    calls[name] = calls.get(name, 0) + 1
                    tag = name if calls[name] == 1 else f"{name}#{calls[name]}"
                    layer_stats.append((tag, self._layer_stats(output, bounds)))
                if is_features:
                    # a copy: a later in-place op must not change the features we keep
                    features[:] = [output.detach().flatten(1).clone()]
            return hook

        hooked: dict[int, tuple[nn.Module, str, bool, bool]] = {}
        for name, module in self.layers:
            hooked[id(module)] = (module, name, True, self._feature_module is None)
        if self._feature_module is not None:
            fm = self._feature_module
            module, name, measured, _ = hooked.get(id(fm), (fm, self.feature_layer, False, True))
            hooked[id(fm)] = (module, name, measured, True)

        modules = list(self.model.modules())
        modes = [m.training for m in modules]
        handles = []
        try:
            for module, name, measured, is_features in hooked.values():
                bounds = saturation_bounds(module) if measured else None
                handles.append(module.register_forward_hook(
                    on_output(name or "root", bounds, measured, is_features)))
            if self.eval_mode:
                self.model.eval()
            with torch.no_grad():
                call_module(self.model, batch)
        finally:
            for handle in handles:
                handle.remove()
            for module, mode in zip(modules, modes):
                module.training = mode

        with torch.no_grad():
            scalars = self._combine(layer_stats, features[0] if features else None)
        self._to_host(scalars, {tag: s["scores"] for tag, s in layer_stats})
        return dict(self.stats)

    def _measure_traced(self, batch: Any) -> dict[str, float]:
        if self.structure.stale():  # a submodule was replaced (plasticity injection): re-read
            self._read_structure()
        st = self.structure
        nodes = list(self._nodes)
        if self._feature_module is not None:
            feature = next((n for n in st.nodes if st.module_of(n) is self._feature_module), None)
            if feature is None:
                raise ValueError(f"feature_layer {self.feature_layer!r} is not called in the forward pass")
            nodes.append(feature)
        probe = st.probe(nodes)
        modules = list(self.model.modules())
        modes = [m.training for m in modules]
        try:
            if self.eval_mode:
                self.model.eval()
            with torch.no_grad():
                outs = call_module(probe, batch)
        finally:
            for module, mode in zip(modules, modes):
                module.training = mode
        with torch.no_grad():
            layer_stats = []
            for (tag, _), node, out in zip(self.layers, self._nodes, outs):
                if isinstance(out, Tensor) and out.dim() >= 2:
                    layer_stats.append((tag, self._layer_stats(out, st.activation_bounds(node))))
            if self._feature_module is not None:
                features = outs[-1]
            else:
                features = next((o for o in reversed(outs) if isinstance(o, Tensor) and o.dim() >= 2), None)
            if features is not None:
                features = features.detach().flatten(1)
            scalars = self._combine(layer_stats, features)
        self._to_host(scalars, {tag: s["scores"] for tag, s in layer_stats})
        return dict(self.stats)

    def _layer_stats(self, out: Tensor, bounds: tuple[float, float] | None) -> dict[str, Tensor]:
        means = metrics.unit_means(out)
        stats = {
            "dormant": metrics.dormant_mask_from_means(means, self.tau).sum(),
            "dead": (means == 0).sum(),
            "active": metrics.active_fraction(out, bounds, self.saturation_threshold).sum(),
            "scores": metrics.scores_from_means(means),
        }
        if bounds is not None:
            stats["saturated"] = metrics.saturated_mask(
                out, self.saturation_threshold, *bounds).sum()
        return stats

    def _combine(self, layer_stats: list[tuple[str, dict[str, Tensor]]],
                 features: Tensor | None) -> dict[str, Tensor]:
        p = "plasticity"
        out: dict[str, Tensor] = {}
        if layer_stats:
            def total(key: str, layers: list[dict[str, Tensor]]) -> Tensor:
                return torch.stack([s[key].float() for s in layers]).sum()

            def units(layers: list[dict[str, Tensor]]) -> int:
                return sum(s["scores"].numel() for s in layers)

            stats = [s for _, s in layer_stats]
            out[f"{p}/dormant_ratio"] = total("dormant", stats) / units(stats)
            out[f"{p}/dead_ratio"] = total("dead", stats) / units(stats)
            out[f"{p}/active_units"] = total("active", stats) / units(stats)
            saturating = [s for s in stats if "saturated" in s]
            if saturating:
                out[f"{p}/saturated_ratio"] = total("saturated", saturating) / units(saturating)
        if features is not None:
            erank, srank = metrics.feature_ranks(features, self.srank_delta)
            out[f"{p}/effective_rank"] = erank
            out[f"{p}/srank"] = srank
            out[f"{p}/feature_norm"] = metrics.feature_norm(features)
        wnorm, per_layer = metrics.weight_norm(self.model)
        out[f"{p}/weight_norm"] = wnorm
        out[f"{p}/weight_distance_from_init"] = metrics.weight_distance(self.model, self.reference)
        gnorm = metrics.grad_norm(self.model)
        if gnorm is not None:
            out[f"{p}/grad_norm"] = gnorm
        for tag, s in layer_stats:
            n = s["scores"].numel()
            out[f"{p}/dormant_ratio/{tag}"] = s["dormant"] / n
            out[f"{p}/dead_ratio/{tag}"] = s["dead"] / n
            out[f"{p}/active_units/{tag}"] = s["active"] / n
            if "saturated" in s:
                out[f"{p}/saturated_ratio/{tag}"] = s["saturated"] / n
        for name, norm in per_layer.items():
            out[f"{p}/weight_norm/{name}"] = norm
        for name, m in self.adalins:
            alpha = m.alpha.detach().float()
            out[f"{p}/adalin_alpha_mean/{name}"] = alpha.mean()
            out[f"{p}/adalin_alpha_abs_mean/{name}"] = alpha.abs().mean()
        return out

    def _to_host(self, scalars: dict[str, Tensor], scores: dict[str, Tensor]) -> None:
        """Move every result to the host in one transfer (one device sync)."""
        tensors = [*scalars.values(), *scores.values()]  # never empty: the weight norm is always there
        device = tensors[0].device
        # float64 when any result is (a float64 model): the float32 ones convert exactly
        dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
        flat = torch.cat([t.detach().reshape(-1).to(device=device, dtype=dtype) for t in tensors])
        flat = flat.cpu()
        values = flat[: len(scalars)].tolist()
        self.stats = dict(zip(scalars, values))
        self.scores = {}
        offset = len(scalars)
        for name, s in scores.items():
            self.scores[name] = flat[offset: offset + s.numel()]
            offset += s.numel()

    # -------------------------------------------------------------------- logging
    def log(self, writer: Any, step: int, histograms: bool | None = None) -> None:
        """Write the last measured stats with ``writer.add_scalar(tag, value, step)`` and,
        when ``histograms`` is True (or, if None, on every ``histogram_every``-th call),
        ``writer.add_histogram("plasticity/neuron_scores/<layer>", scores, step)``."""
        if histograms is None:
            histograms = self.histogram_every > 0 and self._log_calls % self.histogram_every == 0
        self._log_calls += 1
        for tag, value in self.stats.items():
            writer.add_scalar(tag, value, step)
        if histograms:
            for name, scores in self.scores.items():
                writer.add_histogram(f"plasticity/neuron_scores/{name}", scores, step)
