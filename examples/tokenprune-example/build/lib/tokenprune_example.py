"""A third-party tokenprune plugin: one strategy, registered through the `tokenprune` entry-point group."""
import torch

import tokenprune as tp


class KeyNormTopK(tp.Strategy):
    """Keeps the ``budget`` visual tokens whose keys have the largest norm (ties: lower index first).

    A deliberately simple importance rule, here to show what a plugin needs:
    a Strategy subclass, its params, and one ``register_strategies`` hook.
    """

    name = "key_norm"
    stage = "llm"
    layer = 2
    requires = frozenset({"keys"})
    params = {"p": tp.Param(2.0, "order of the norm", float, min=1.0)}
    paper = "-"

    def select(self, keys, attn, coords, budget, ctx):
        norms = torch.linalg.vector_norm(keys.float(), ord=self.cfg.p, dim=-1)
        # stable sort on the negated norm: equal norms keep index order
        order = torch.sort(-norms, dim=-1, stable=True).indices[:, :budget]
        return tp.Selection(keep=order.sort(dim=-1).values, info={"order": order.tolist()})


@tp.hookimpl
def register_strategies(register):
    register(KeyNormTopK)
