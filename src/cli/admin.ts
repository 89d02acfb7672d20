/**
 * `npm run admin -- reset-password USERNAME`: sets a new password for a
 * locked-out administrator and ends all of their sessions. The password is
 * prompted for (without echo) on a terminal, or read from the first line of
 * standard input otherwise.
 */
import { ConfigError, loadConfig } from '../config';
import { openDatabase, type OpenDatabase } from '../db';
import { DataDirLockedError } from '../db/lock';
import { administratorPasswordSchema, getAdministratorByUsername, listAdministrators, setAdministratorPassword } from '../domain/administrators';

const USAGE = `Usage: npm run admin -- reset-password USERNAME

  Sets a new password for the administrator USERNAME and ends all of their
  console sessions. On a terminal it asks for the password twice (nothing is
  shown while you type); otherwise it reads the password from the first line
  of standard input, e.g.  printf '%s\\n' "$NEW_PASSWORD" | npm run admin -- reset-password alice

  Uses the same database as the server: DATABASE_URL, or else DATA_DIR
  (default ./data). With DATA_DIR the server must be stopped first.`;

class CliError extends Error {}

async function main(argv: string[]): Promise<void> {
  const [command, username, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return;
  }
  if (command !== 'reset-password' || !username || rest.length > 0) throw new CliError(USAGE);

  const config = loadConfig();
  const database = await openConfiguredDatabase(config);
  try {
    const administrator = await getAdministratorByUsername(database.db, username);
    if (!administrator) {
      const names = (await listAdministrators(database.db)).map((a) => a.username);
      throw new CliError(
        `No administrator is named "${username}" in ${database.location}.` +
          (names.length ? ` Administrators: ${names.join(', ')}.` : ' There is no administrator yet: start Gatehouse and use its setup link.'),
      );
    }
    const password = await readNewPassword(username);
    const checked = administratorPasswordSchema.safeParse(password);
    if (!checked.success) throw new CliError(`The password was not changed: ${checked.error.issues[0]?.message ?? 'invalid password.'}`);
    await setAdministratorPassword(database.db, administrator.id, checked.data, { username: null, via: 'npm run admin -- reset-password' });
    console.log(`The password of ${JSON.stringify(administrator.username)} is changed; all of their console sessions have ended.`);
  } finally {
    await database.close();
  }
}

async function openConfiguredDatabase(config: ReturnType<typeof loadConfig>): Promise<OpenDatabase> {
  try {
    return await openDatabase(
      config.DATABASE_URL ? { kind: 'postgres', url: config.DATABASE_URL } : { kind: 'pglite', dataDir: config.DATA_DIR },
    );
  } catch (error) {
    if (error instanceof DataDirLockedError) {
      throw new CliError(
        `Gatehouse is running on ${error.dir} (pid ${error.pid}). The embedded database serves one process ` +
          'at a time, so this command cannot open it while the server runs: stop the server, run this command, ' +
          'then start the server again. (With DATABASE_URL the server can keep running.)',
      );
    }
    throw error;
  }
}

async function readNewPassword(username: string): Promise<string> {
  if (process.stdin.isTTY) {
    const first = await promptHidden(`New password for ${username}: `);
    const second = await promptHidden('Repeat the new password: ');
    if (first !== second) throw new CliError('The two passwords differ; nothing was changed.');
    return first;
  }
  let input = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) input += chunk as string;
  const [line = ''] = input.split(/\r?\n/, 1);
  if (!line) throw new CliError('No password on standard input; nothing was changed.');
  return line;
}

/** Keystrokes typed ahead of a prompt (both answers pasted at once, say). */
let typedAhead = '';

/** Reads one line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  const { stdin, stdout } = process;
  stdout.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (outcome: () => void) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      stdout.write('\n');
      outcome();
    };
    const onData = (chunk: string) => {
      const chars = Array.from(chunk);
      for (let i = 0; i < chars.length; i++) {
        const ch = chars[i]!;
        if (ch === '\r' || ch === '\n') {
          typedAhead = chars.slice(i + 1).join('').replace(/^\n/, '');
          return finish(() => resolve(value));
        }
        if (ch === '\u0003' || (ch === '\u0004' && !value)) return finish(() => reject(new CliError('Cancelled; nothing was changed.')));
        if (ch === '\u007f' || ch === '\b') value = Array.from(value).slice(0, -1).join('');
        else if (ch >= ' ') value += ch;
      }
    };
    stdin.on('data', onData);
    const pending = typedAhead;
    typedAhead = '';
    if (pending) onData(pending);
    if (stdin.listeners('data').includes(onData)) stdin.resume();
  });
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (error: unknown) => {
    if (error instanceof CliError || error instanceof ConfigError) console.error(error.message);
    else console.error('The command failed:', error);
    process.exit(1);
  },
);
