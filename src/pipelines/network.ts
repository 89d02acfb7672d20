import dns from 'node:dns';
import net from 'node:net';

/**
 * The SSRF guard of every outbound connection a pipeline makes (webhooks,
 * TagoIO, MQTT bridges): an address in a private, loopback, link-local or
 * otherwise internal range is refused unless PIPELINES_ALLOW_PRIVATE_NETWORKS
 * is set. It judges the address actually connected to: a name is resolved
 * through the guard's own lookup, which the connection then uses (no second
 * resolution a DNS rebinding could change).
 */
const internal = new net.BlockList();
for (const [address, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  internal.addSubnet(address, prefix, 'ipv4');
}
for (const [address, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96],
] as const) {
  internal.addSubnet(address, prefix, 'ipv6');
}

/** True when `address` (an IP literal) is internal: private, loopback, link-local, multicast… */
export function isInternalAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 0) return false;
  if (family === 6) {
    // IPv4-mapped (::ffff:10.0.0.1) is judged as the IPv4 address.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return internal.check(mapped[1]!, 'ipv4');
    return internal.check(address, 'ipv6');
  }
  return internal.check(address, 'ipv4');
}

export class BlockedAddressError extends Error {
  readonly code = 'EBLOCKED';
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

/** A `lookup` for net/tls connect options that refuses internal addresses unless `allowInternal`. */
export function guardedLookup(allowInternal: boolean) {
  return (hostname: string, options: dns.LookupOptions, callback: LookupCallback) => {
    dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, '');
      const list = addresses as dns.LookupAddress[];
      const allowed = allowInternal ? list : list.filter((entry) => !isInternalAddress(entry.address));
      if (allowed.length === 0) {
        return callback(new BlockedAddressError(`${hostname} resolves to an internal address (${list.map((a) => a.address).join(', ')}); set PIPELINES_ALLOW_PRIVATE_NETWORKS=1 to allow it`), '');
      }
      if (options.all) return callback(null, allowed);
      callback(null, allowed[0]!.address, allowed[0]!.family);
    });
  };
}

/** Throws BlockedAddressError when `hostname` is an internal IP literal and those are not allowed (a lookup never sees literals). */
export function checkLiteralHost(hostname: string, allowInternal: boolean): void {
  const bare = hostname.replace(/^\[|\]$/g, '');
  if (!allowInternal && isInternalAddress(bare)) {
    throw new BlockedAddressError(`${bare} is an internal address; set PIPELINES_ALLOW_PRIVATE_NETWORKS=1 to allow it`);
  }
}
