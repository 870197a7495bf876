// DOM building without innerHTML: every string from the API lands in a text node, so a sample's
// text can never become markup.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...children.flat()
    .filter((child) => child !== null && child !== undefined && child !== false)
    .map((child) => (child instanceof Node ? child : String(child))));
  return node;
}

export function num(value, digits = 3) {
  return typeof value === 'number' ? value.toFixed(digits) : '–';
}

export function pct(value) {
  return typeof value === 'number' ? `${(100 * value).toFixed(1)}%` : '–';
}
