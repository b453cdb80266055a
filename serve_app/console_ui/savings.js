// What each answer cost against always routing to the largest expert, from the catalog of GET /v1/experts.
// The same formulas as experts/catalog.py (cost_usd, carbon_g), applied to the answer's own token counts.

const JOULES_PER_KWH = 3.6e6;

// The expert with the most parameters: the one a router-less deployment would send everything to.
export function largestExpert(experts) {
  return experts.reduce((top, e) => (e.params_b > top.params_b ? e : top), experts[0]);
}

export function callCost(expert, tokensIn, tokensOut) {
  return (tokensIn * expert.price_in_per_1k + tokensOut * expert.price_out_per_1k) / 1000;
}

export function callCarbon(expert, tokensIn, tokensOut, gramsPerKwh) {
  return ((expert.energy_per_token_j * (tokensIn + tokensOut)) / JOULES_PER_KWH) * gramsPerKwh;
}

// {largest, costUsd, carbonG, largestCostUsd, largestCarbonG} of one answer's routing metadata.
export function compareWithLargest(routing, experts, gramsPerKwh) {
  const largest = largestExpert(experts);
  const tokensIn = routing.tokens_in || 0;
  const tokensOut = routing.tokens_out || 0;
  return {
    largest: largest.name,
    costUsd: routing.cost_usd || 0,
    carbonG: routing.carbon_g || 0,
    largestCostUsd: callCost(largest, tokensIn, tokensOut),
    largestCarbonG: callCarbon(largest, tokensIn, tokensOut, gramsPerKwh),
  };
}

// Sums over the session's answers, for the savings panel.
export function totalSavings(comparisons) {
  const sum = (key) => comparisons.reduce((total, c) => total + c[key], 0);
  return {
    answers: comparisons.length,
    costUsd: sum("costUsd"),
    carbonG: sum("carbonG"),
    largestCostUsd: sum("largestCostUsd"),
    largestCarbonG: sum("largestCarbonG"),
  };
}
