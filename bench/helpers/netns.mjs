// Network namespaces for bench/chaos.mjs --netns: a bridge in this namespace
// (etcd and the client listen on its address) and one namespace per store,
// joined to the bridge by a veth pair, so a store can be cut off from
// everything (its link down) and joined again. Needs root and iproute2;
// everything made here is removed by destroy(), also on exit.
import { execFileSync } from 'node:child_process';

const made = [];

function ip(...args) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Whether namespaces can be made here: root, and `ip netns` works. */
export function netnsAvailable() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return false;
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A bridge and `n` store namespaces on 10.231.<k>.0/24 (k from the process id):
 * { hostIp, stores: [{ ns, ip }], exec(i, cmd, args) → [cmd, args] to spawn in
 * namespace i, cut(i), heal(i), destroy() }.
 */
export function createNet(n) {
  const tag = process.pid % 10000;
  const subnet = `10.231.${process.pid % 250}`;
  const bridge = `fpbr${tag}`;
  const net = {
    hostIp: `${subnet}.1`,
    stores: [],
    exec: (i, cmd, args) => ['ip', ['netns', 'exec', net.stores[i].ns, cmd, ...args]],
    cut: (i) => ip('link', 'set', net.stores[i].host, 'down'),
    heal: (i) => ip('link', 'set', net.stores[i].host, 'up'),
    destroy,
  };
  function destroy() {
    for (const m of made.splice(0).reverse()) {
      try {
        if (m.type === 'ns') ip('netns', 'del', m.name);
        else ip('link', 'del', m.name);
      } catch {
        // already gone
      }
    }
  }
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    made.push({ type: 'link', name: bridge });
    ip('addr', 'add', `${net.hostIp}/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    for (let i = 0; i < n; i++) {
      const ns = `fp${tag}s${i}`;
      const host = `fp${tag}h${i}`;
      const inner = `fp${tag}n${i}`;
      const addr = `${subnet}.${10 + i}`;
      ip('netns', 'add', ns);
      made.push({ type: 'ns', name: ns });
      ip('link', 'add', host, 'type', 'veth', 'peer', 'name', inner);
      made.push({ type: 'link', name: host });
      ip('link', 'set', inner, 'netns', ns);
      ip('link', 'set', host, 'master', bridge);
      ip('link', 'set', host, 'up');
      ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', inner);
      ip('-n', ns, 'link', 'set', inner, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      net.stores.push({ ns, ip: addr, host });
    }
  } catch (err) {
    destroy();
    throw new Error(`network namespaces: ${err.stderr?.toString().trim() || err.message}`);
  }
  return net;
}

process.on('exit', () => {
  for (const m of made.splice(0).reverse()) {
    try {
      execFileSync('ip', m.type === 'ns' ? ['netns', 'del', m.name] : ['link', 'del', m.name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});
