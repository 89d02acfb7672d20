import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Certificates made at test time with the openssl CLI: a CA, server and
 * client certificates it signs (EC P-256, quick to make), an expired one.
 */
export interface Issued {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** `AB:CD:…`, as Gatehouse shows and stores it. */
  fingerprint: string;
}

export interface CertificateFactory {
  dir: string;
  ca(name: string): Issued;
  /** A server certificate for 127.0.0.1 and localhost, signed by `ca`. */
  server(ca: Issued, name: string, options?: { days?: number }): Issued;
  /** A client certificate signed by `ca`; `expired` gives one that ended in 2020. */
  client(ca: Issued, name: string, options?: { expired?: boolean }): Issued;
  /** Removes every file made. */
  remove(): void;
}

function openssl(args: string[], cwd: string) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function certificateFactory(): CertificateFactory {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-certs-'));
  let serial = 0;
  const issued = (name: string): Issued => {
    const certFile = path.join(dir, `${name}.crt`);
    const keyFile = path.join(dir, `${name}.key`);
    const cert = readFileSync(certFile, 'utf8');
    return { certFile, keyFile, cert, key: readFileSync(keyFile, 'utf8'), fingerprint: new X509Certificate(cert).fingerprint256 };
  };
  const newKey = (name: string) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
  const sign = (ca: Issued, name: string, cn: string, extensions: string, days: number) => {
    newKey(name);
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`], dir);
    writeFileSync(path.join(dir, `${name}.ext`), extensions);
    openssl(
      ['x509', '-req', '-in', `${name}.csr`, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-set_serial', String(++serial + 1000), '-days', String(days), '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`],
      dir,
    );
    return issued(name);
  };
  return {
    dir,
    ca(name) {
      newKey(name);
      openssl(
        ['req', '-x509', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-days', '365', '-sha256', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', `${name}.crt`],
        dir,
      );
      return issued(name);
    },
    server(ca, name, options = {}) {
      return sign(ca, name, name, 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n', options.days ?? 365);
    },
    client(ca, name, options = {}) {
      if (!options.expired) return sign(ca, name, name, 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n', 365);
      // `openssl ca` sets any dates: this certificate ended long ago.
      newKey(name);
      openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-out', `${name}.csr`], dir);
      const caDir = path.join(dir, `ca-${name}`);
      mkdirSync(caDir);
      writeFileSync(path.join(caDir, 'index.txt'), '');
      writeFileSync(path.join(caDir, 'serial'), '2001\n');
      writeFileSync(
        path.join(caDir, 'ca.cnf'),
        [
          '[ca]',
          'default_ca = test',
          '[test]',
          `dir = ${caDir}`,
          'database = $dir/index.txt',
          'serial = $dir/serial',
          'new_certs_dir = $dir',
          'default_md = sha256',
          'policy = any',
          'copy_extensions = none',
          'x509_extensions = client',
          '[any]',
          'commonName = supplied',
          '[client]',
          'basicConstraints = CA:FALSE',
          'extendedKeyUsage = clientAuth',
          '',
        ].join('\n'),
      );
      openssl(
        ['ca', '-batch', '-config', path.join(caDir, 'ca.cnf'), '-cert', ca.certFile, '-keyfile', ca.keyFile, '-startdate', '20200101000000Z', '-enddate', '20200201000000Z', '-notext', '-in', `${name}.csr`, '-out', `${name}.crt`],
        dir,
      );
      return issued(name);
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
