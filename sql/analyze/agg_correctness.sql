-- Correct versus incorrect responses (reward 1 / 0): how much and how often the models diverge
-- on each, per pair and generator.
with

scored as (

    select pair, generator, prompt_id, sample_id, reward = 1 as is_correct, js from tokens

),

per_response as (

    select
        pair,
        generator,
        is_correct,
        count(*) as n_tokens,
        count_if(js > $tau) as n_divergent
    from scored
    group by pair, generator, prompt_id, sample_id, is_correct

),

response_stats as (

    select
        pair,
        generator,
        is_correct,
        count(*) as n_responses,
        avg(n_tokens) as mean_tokens_per_response,
        avg(n_divergent) as mean_divergent_per_response
    from per_response
    group by pair, generator, is_correct

),

position_stats as (

    select
        pair,
        generator,
        is_correct,
        count(*) as n_positions,
        avg(js) as mean_js,
        median(js) as median_js,
        quantile_cont(js, 0.95) as js_p95,
        avg((js > $tau)::integer) as share_divergent
    from scored
    group by pair, generator, is_correct

),

final as (

    select
        position_stats.*,
        response_stats.n_responses,
        response_stats.mean_tokens_per_response,
        response_stats.mean_divergent_per_response
    from position_stats
    inner join response_stats
        on position_stats.pair = response_stats.pair
        and position_stats.generator = response_stats.generator
        and position_stats.is_correct = response_stats.is_correct

)

select
    pair,
    generator,
    is_correct,
    n_responses,
    n_positions,
    mean_tokens_per_response,
    mean_js,
    median_js,
    js_p95,
    share_divergent,
    mean_divergent_per_response
from final
order by pair, generator, is_correct
