"""The Neural Predictor's GCN (Wen et al.), scikit-learn style.

Nodes start as one-hot operation vectors; each layer averages a forward and a backward
graph convolution, V <- ½·ReLU(Â·V·W⁺) + ½·ReLU(Âᵀ·V·W⁻), Â the adjacency with self-loops,
row-normalised by degree; node states are averaged, a hidden fully-connected layer
follows, and a sigmoid scaled to the accuracy range makes the prediction. The width of the
node states is chosen by k-fold cross-validation on the training samples only; all folds
(and grid points of one width) train at once as one batched ensemble, so a fit costs
about as much as a single model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from samplenas.predictors.base import Predictor
from samplenas.space import Arch, SearchSpace


def normalized_adjacency(adj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(A + I) with each row divided by its degree; padded nodes get no self-loop."""
    eye = torch.diag_embed(mask)
    a = adj + eye
    deg = a.sum(-1, keepdim=True).clamp(min=1.0)
    return a / deg


def graphs_to_tensors(
    space: SearchSpace, archs: Sequence[Arch]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch of padded graphs: features [N, I, F], Â and Âᵀ-normalised [N, I, I], mask [N, I]."""
    graphs = [space.to_graph(a) for a in archs]
    n_nodes = max(g[0].shape[0] for g in graphs)
    n_feat = graphs[0][0].shape[1]
    x = np.zeros((len(graphs), n_nodes, n_feat), dtype=np.float32)
    adj = np.zeros((len(graphs), n_nodes, n_nodes), dtype=np.float32)
    mask = np.zeros((len(graphs), n_nodes), dtype=np.float32)
    for i, (f, a) in enumerate(graphs):
        k = f.shape[0]
        x[i, :k], adj[i, :k, :k], mask[i, :k] = f, a, 1
    x_t, adj_t, mask_t = torch.from_numpy(x), torch.from_numpy(adj), torch.from_numpy(mask)
    fwd = normalized_adjacency(adj_t, mask_t)
    bwd = normalized_adjacency(adj_t.transpose(1, 2), mask_t)
    return x_t, fwd, bwd, mask_t


class GCNEnsemble(torch.nn.Module):
    """E independent GCNs evaluated together (parameters carry a leading ensemble axis)."""

    def __init__(
        self,
        members: int,
        n_feat: int,
        width: int,
        layers: int = 3,
        hidden: int = 128,
        out_range: tuple[float, float] = (0.0, 1.0),
        logits: bool = False,
    ) -> None:
        super().__init__()

        def param(*shape: int, fan_in: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.randn(members, *shape) * (2.0 / fan_in) ** 0.5)

        dims = [n_feat] + [width] * layers
        self.w_fwd = torch.nn.ParameterList(
            [param(dims[i], dims[i + 1], fan_in=dims[i]) for i in range(layers)]
        )
        self.w_bwd = torch.nn.ParameterList(
            [param(dims[i], dims[i + 1], fan_in=dims[i]) for i in range(layers)]
        )
        self.fc1 = param(width, hidden, fan_in=width)
        self.b1 = torch.nn.Parameter(torch.zeros(members, 1, hidden))
        self.fc2 = param(hidden, 1, fan_in=hidden)
        self.b2 = torch.nn.Parameter(torch.zeros(members, 1, 1))
        self.lo, self.hi = out_range
        self.logits = logits

    def forward(
        self, x: torch.Tensor, fwd: torch.Tensor, bwd: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """x [N, I, F] -> predictions [E, N]."""
        h = x.unsqueeze(0).expand(self.fc1.shape[0], *x.shape).contiguous()  # [E, N, I, F]
        for wf, wb in zip(self.w_fwd, self.w_bwd, strict=True):
            e, n, i, f = h.shape
            hf = torch.bmm(h.reshape(e, n * i, f), wf).view(e, n, i, -1)
            hb = torch.bmm(h.reshape(e, n * i, f), wb).view(e, n, i, -1)
            h = 0.5 * F.relu(torch.matmul(fwd, hf)) + 0.5 * F.relu(torch.matmul(bwd, hb))
        m = mask.unsqueeze(0).unsqueeze(-1)
        pooled = (h * m).sum(2) / m.sum(2)  # mean over real nodes: [E, N, D]
        z = F.relu(torch.bmm(pooled, self.fc1) + self.b1)
        out = (torch.bmm(z, self.fc2) + self.b2).squeeze(-1)
        if self.logits:
            return out
        return self.lo + (self.hi - self.lo) * torch.sigmoid(out)


def train_ensemble(
    model: GCNEnsemble,
    data,
    y: torch.Tensor,
    weights: torch.Tensor,
    epochs: int,
    lr: float,
    weight_decay: float,
    bce: bool = False,
) -> None:
    """Full-batch Adam; member e's loss uses the samples with weights[e] > 0."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    norm = weights.sum(1).clamp(min=1.0)
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        pred = model(*data)
        if bce:
            per = F.binary_cross_entropy_with_logits(pred, y.expand_as(pred), reduction="none")
        else:
            per = (pred - y) ** 2
        loss = ((per * weights).sum(1) / norm).sum()
        loss.backward()
        opt.step()


def output_range(y: np.ndarray) -> tuple[float, float]:
    """A range comfortably around the observed accuracies, clipped to [0, 1] or [0, 100]."""
    lo, hi = float(y.min()), float(y.max())
    span = max(hi - lo, 1e-3)
    top = 1.0 if hi <= 1.0 else 100.0
    return max(0.0, lo - span), min(top, hi + span)


class GCNPredictor(Predictor):
    """GCN regressor; ``widths`` are cross-validated with ``folds`` folds on the fit data."""

    name = "gcn"

    def __init__(
        self,
        space: SearchSpace,
        widths: Sequence[int] = (32, 96),
        folds: int = 3,
        epochs: int = 250,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        layers: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(space)
        self.widths, self.folds, self.epochs = tuple(widths), folds, epochs
        self.lr, self.weight_decay, self.layers, self.seed = lr, weight_decay, layers, seed
        self.cv_mse: dict[int, float] = {}

    def _ensemble(self, members: int, n_feat: int, width: int, out_range) -> GCNEnsemble:
        return GCNEnsemble(members, n_feat, width, self.layers, out_range=out_range)

    def fit(self, archs: Sequence[Arch], y: Sequence[float]) -> GCNPredictor:
        torch.manual_seed(self.seed)
        data = graphs_to_tensors(self.space, archs)
        y_np = np.asarray(y, dtype=np.float32)
        target = torch.from_numpy(y_np).unsqueeze(0)
        self.range = output_range(y_np)
        n = len(y_np)
        width = self.widths[0]
        if len(self.widths) > 1 and n >= 2 * self.folds:
            fold_of = np.random.default_rng(self.seed).permutation(n) % self.folds
            train_w = torch.tensor(
                np.stack([fold_of != k for k in range(self.folds)]), dtype=torch.float32
            )
            for w in self.widths:
                model = self._ensemble(self.folds, data[0].shape[-1], w, self.range)
                train_ensemble(
                    model, data, target, train_w, self.epochs, self.lr, self.weight_decay
                )
                with torch.no_grad():
                    err = (model(*data) - target) ** 2
                held = 1.0 - train_w
                self.cv_mse[w] = float((err * held).sum() / held.sum())
            width = min(self.cv_mse, key=self.cv_mse.get)
        self.width = width
        self.model = self._ensemble(1, data[0].shape[-1], width, self.range)
        train_ensemble(
            self.model, data, target, torch.ones(1, n), self.epochs, self.lr, self.weight_decay
        )
        return self

    @torch.no_grad()
    def predict(self, archs: Sequence[Arch], batch: int = 8192) -> np.ndarray:
        out = []
        for i in range(0, len(archs), batch):
            data = graphs_to_tensors(self.space, archs[i : i + batch])
            out.append(self.model(*data)[0].numpy())
        return np.concatenate(out) if out else np.zeros(0)


class TwoStagePredictor(Predictor):
    """Wen et al. §4.2: a GCN classifier drops architectures predicted below the accuracy
    ``threshold`` (default: the ``quantile`` of the fit labels); a GCN regressor ranks the
    rest. Filtered architectures get a prediction below every kept one."""

    name = "gcn-two-stage"

    def __init__(
        self,
        space: SearchSpace,
        threshold: float | None = None,
        quantile: float = 0.3,
        seed: int = 0,
        **gcn: object,
    ) -> None:
        super().__init__(space)
        self.threshold, self.quantile, self.seed = threshold, quantile, seed
        self.regressor = GCNPredictor(space, seed=seed, **gcn)  # type: ignore[arg-type]
        self.epochs = self.regressor.epochs

    def fit(self, archs: Sequence[Arch], y: Sequence[float]) -> TwoStagePredictor:
        y_np = np.asarray(y, dtype=np.float32)
        if self.threshold is None:
            self.threshold = float(np.quantile(y_np, self.quantile))
        torch.manual_seed(self.seed)
        data = graphs_to_tensors(self.space, archs)
        labels = torch.from_numpy((y_np >= self.threshold).astype(np.float32)).unsqueeze(0)
        self.classifier = GCNEnsemble(
            1, data[0].shape[-1], self.regressor.widths[0], self.regressor.layers, logits=True
        )
        train_ensemble(
            self.classifier,
            data,
            labels,
            torch.ones(1, len(y_np)),
            self.epochs,
            self.regressor.lr,
            self.regressor.weight_decay,
            bce=True,
        )
        keep = [i for i, v in enumerate(y_np) if v >= self.threshold]
        self.regressor.fit([archs[i] for i in keep], y_np[keep])
        return self

    @torch.no_grad()
    def keep_mask(self, archs: Sequence[Arch]) -> np.ndarray:
        data = graphs_to_tensors(self.space, archs)
        return (self.classifier(*data)[0] > 0).numpy()

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        pred = self.regressor.predict(archs)
        keep = self.keep_mask(archs)
        floor = float(pred.min()) - 1.0 if len(pred) else 0.0
        return np.where(keep, pred, floor)
