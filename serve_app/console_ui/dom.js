// Small DOM and number-formatting helpers shared by every console module.

// el("div", {class: "card"}, "text", child) builds an element; attributes starting with "on" become listeners.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== undefined && c !== null));
  return node;
}

export function byId(id) {
  return document.getElementById(id);
}

// Replace everything inside `node` with `children`.
export function fill(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== undefined && c !== null));
  return node;
}

// Cost of one request is fractions of a cent: show enough digits to tell experts apart.
export function usd(value) {
  if (value === undefined || value === null) return "–";
  if (value === 0) return "$0";
  const sign = value < 0 ? "-" : "";
  const size = Math.abs(value);
  return `${sign}$${size < 0.01 ? size.toPrecision(3) : size.toFixed(4)}`;
}

// Emissions of one request are milligrams: show mg below a gram.
export function grams(value) {
  if (value === undefined || value === null) return "–";
  if (value === 0) return "0 g";
  if (Math.abs(value) < 1) return `${(value * 1000).toPrecision(3)} mg`;
  return `${value.toFixed(2)} g`;
}

export function ms(value) {
  if (value === undefined || value === null) return "–";
  return value < 100 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

export function percent(fraction) {
  return `${Math.round(fraction * 100)}%`;
}

export function number(value, digits = 3) {
  if (value === undefined || value === null) return "–";
  // Adding 0 turns -0 into 0, so a score that rounds to zero does not print as "-0.000".
  return (Number(Number(value).toFixed(digits)) + 0).toFixed(digits);
}
