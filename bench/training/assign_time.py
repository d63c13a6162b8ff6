import torch, time, statistics
torch.set_num_threads(1)
from effdiff.training.coupling import assignment, cost_matrix
from effdiff import data
xd, _ = data.dataset("digits", "train"); xm, _ = data.dataset("mnist", "train")
for name, X in (("digits 8x8", xd), ("mnist 28x28", xm)):
    for n in (128, 1024):
        for kind in ("ot", "immiscible"):
            g = torch.Generator().manual_seed(0)
            ts, tc, ratio = [], [], []
            for r in range(5 if n == 1024 else 20):
                x = X[torch.randint(0, len(X), (n,), generator=g)]
                eps = torch.randn(x.shape, generator=g)
                t0 = time.perf_counter(); c = cost_matrix(x, eps, kind); t1 = time.perf_counter()
                p = assignment(x, eps, kind); t2 = time.perf_counter()
                ts.append(t2 - t1); tc.append(t1 - t0)
                ratio.append(float(c[torch.arange(n), p].mean() / c.diagonal().mean()))
            print(f"{name:12s} B={n:5d} {kind:10s} assignment (cost+solve) median {1e3*statistics.median(ts):8.1f} ms  (cost matrix alone {1e3*statistics.median(tc):6.1f} ms)  mean pair cost / random {statistics.mean(ratio):.3f}")
