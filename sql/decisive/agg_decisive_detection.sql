-- How well each token-table signal finds the positions whose resampling changes the outcome.
-- Measured positions (view `decisiveness`) of pair $pair's responses are joined to their token
-- rows; a position is pivotal at cut c when |delta_value| >= c and its interval excludes 0.
-- Each signal (js, base entropy, |delta log-prob|) flags the generator's measured positions
-- that fewer than $flag_shares of them outscore (ties at the cut all flagged): precision and
-- recall per generator, signal, cut and share, plus the threshold-free AUC (Mann-Whitney, ties
-- counted half).
with

pairs as (

    select pair, base_model, tuned_model from stg_pairs where pair = $pair

),

token_rows as (

    select
        tokens.generator,
        tokens.prompt_id,
        tokens.sample_id,
        tokens.position,
        tokens.js,
        tokens.entropy_base,
        abs(tokens.delta_logprob) as abs_delta,
        case
            when tokens.generator = 'base' then pairs.base_model else pairs.tuned_model
        end as model
    from tokens
    inner join pairs on tokens.pair = pairs.pair

),

measured as (

    select
        token_rows.*,
        decisiveness.delta_value,
        decisiveness.delta_low,
        decisiveness.delta_high
    from decisiveness
    inner join token_rows
        on decisiveness.model = token_rows.model
        and decisiveness.prompt_id = token_rows.prompt_id
        and decisiveness.sample_id = token_rows.sample_id
        and decisiveness.position = token_rows.position

),

signals as (

    select *, 'js' as signal, js as score from measured
    union all
    select *, 'entropy_base' as signal, entropy_base as score from measured
    union all
    select *, 'abs_delta' as signal, abs_delta as score from measured

),

ranked as (

    select
        generator,
        signal,
        delta_value,
        delta_low,
        delta_high,
        count(*) over (partition by generator, signal) as n_group,
        rank() over (partition by generator, signal order by score desc) - 1 as n_higher,
        rank() over (partition by generator, signal order by score)
        + (count(*) over (partition by generator, signal, score) - 1) / 2 as mid_rank
    from signals

),

cuts as (

    select unnest($pivot_cuts)::double as pivot_cut

),

shares as (

    select unnest($flag_shares)::double as flag_share

),

labelled as (

    select
        ranked.*,
        cuts.pivot_cut,
        abs(ranked.delta_value) >= cuts.pivot_cut
        and (ranked.delta_low > 0 or ranked.delta_high < 0) as is_pivotal
    from ranked
    cross join cuts

),

auc as (

    select
        generator,
        signal,
        pivot_cut,
        count_if(is_pivotal) as n_pivotal,
        sum(mid_rank) filter (where is_pivotal) as rank_sum
    from labelled
    group by generator, signal, pivot_cut

),

counted as (

    select
        labelled.generator,
        labelled.signal,
        labelled.pivot_cut,
        shares.flag_share,
        count(*) as n_positions,
        count_if(labelled.is_pivotal) as n_pivotal,
        count_if(labelled.n_higher < shares.flag_share * labelled.n_group) as n_flagged,
        count_if(labelled.is_pivotal and labelled.n_higher < shares.flag_share * labelled.n_group)
            as n_true_positive
    from labelled
    cross join shares
    group by labelled.generator, labelled.signal, labelled.pivot_cut, shares.flag_share

),

final as (

    select
        counted.*,
        counted.n_pivotal / counted.n_positions as base_rate,
        counted.n_true_positive / nullif(counted.n_flagged, 0) as precision,
        counted.n_true_positive / nullif(counted.n_pivotal, 0) as recall,
        (auc.rank_sum - auc.n_pivotal * (auc.n_pivotal + 1) / 2)
        / nullif(auc.n_pivotal * (counted.n_positions - auc.n_pivotal), 0) as auc
    from counted
    inner join auc
        on counted.generator = auc.generator
        and counted.signal = auc.signal
        and counted.pivot_cut = auc.pivot_cut

)

select
    generator,
    signal,
    pivot_cut,
    flag_share,
    n_positions,
    n_pivotal,
    n_flagged,
    n_true_positive,
    base_rate,
    precision,
    recall,
    auc
from final
order by generator, signal, pivot_cut, flag_share
