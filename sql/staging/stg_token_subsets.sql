-- Macro stg_token_subsets(tau): the study's two token subsets, every token row under `subset`
-- 'all' and, when divergent (js > tau), once more under 'divergent'. Analyses that report both
-- read `from stg_token_subsets($tau)` and group by subset.
select 'all' as subset, * from tokens

union all

select 'divergent' as subset, * from tokens where js > tau
