-- Macro stg_bootstrap_draws(n_clusters, n_bootstrap, bootstrap_seed): the prompt-cluster
-- bootstrap's draws for a population of n_clusters clusters (indices 0 .. n_clusters - 1): per
-- replicate b in 0 .. n_bootstrap - 1, n_clusters indices drawn with replacement as
-- hash(bootstrap_seed, b, j) % n_clusters, one row each (an index drawn twice is two rows). The
-- draws depend only on the seed and the count, so cells of equal size share them (a paired
-- bootstrap). Call it per cell: `from cells, lateral stg_bootstrap_draws(cells.n, ...)`.
select
    replicates.b,
    hash(bootstrap_seed, replicates.b, unnest(range(n_clusters))) % n_clusters as prompt_index
from range(n_bootstrap) as replicates (b)
