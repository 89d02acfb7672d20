import type { ImportReport } from '../src/domain/transfer/plan';
import { FormAlert, Layout, PageTitle } from './layout';

export interface ImportFormValues {
  format: string;
  mode: string;
  emqxAlgorithm: string;
  emqxSaltPosition: string;
  emqxMacFun: string;
  emqxIterations: string;
}

export const BLANK_IMPORT: ImportFormValues = { format: 'gatehouse', mode: 'upsert', emqxAlgorithm: 'sha256', emqxSaltPosition: 'prefix', emqxMacFun: 'sha256', emqxIterations: '4096' };

const FORMATS: Array<[string, string]> = [
  ['gatehouse', 'Gatehouse export (JSON bundle)'],
  ['csv', 'Clients, CSV'],
  ['ndjson', 'NDJSON'],
  ['mosquitto-passwd', 'Mosquitto password file'],
  ['mosquitto-dynsec', 'Mosquitto dynamic security (JSON)'],
  ['emqx', 'EMQX built-in database users (JSON or CSV)'],
];

function Select(props: { id: string; label: string; value: string; options: Array<[string, string]> }) {
  return (
    <label for={props.id}>
      {props.label}
      <select id={props.id} name={props.id}>
        {props.options.map(([value, label]) => (
          <option value={value} selected={props.value === value}>
            {label}
          </option>
        ))}
      </select>
    </label>
  );
}

export function TransferPage(props: { values: ImportFormValues; errors?: Record<string, string>; report?: ImportReport }) {
  const { values, errors = {}, report } = props;
  return (
    <Layout title="Import and export" section="transfer" scripts={['/static/import.js']}>
      <PageTitle title="Import and export">Move clients, groups and rules between Gatehouses, or bring a fleet over from Mosquitto or EMQX.</PageTitle>
      <section>
        <h2>Export</h2>
        <p>
          <a href="/transfer/export.json" role="button" class="secondary">
            Download everything (JSON)
          </a>{' '}
          <a href="/transfer/clients.csv" role="button" class="secondary outline">
            Download clients (CSV)
          </a>
        </p>
        <p>
          <small>With password hashes; never the server’s private key, administrators or API tokens, nor pipelines (their secrets never leave in clear).</small>
        </p>
      </section>
      <section id="import">
        <h2>Import</h2>
        <form method="post" action="/transfer/import" enctype="multipart/form-data" data-upload-progress="import-progress">
          <FormAlert message={errors.form ?? errors.file ?? errors.confirm} />
          <label for="file">
            File
            <input id="file" name="file" type="file" required aria-invalid={errors.file ? 'true' : undefined} />
          </label>
          <Select id="format" label="Format" value={values.format} options={FORMATS} />
          <Select
            id="mode"
            label="Mode"
            value={values.mode}
            options={[
              ['upsert', 'Upsert: create new, update existing'],
              ['create-only', 'Create only: existing ones are conflicts'],
              ['sync', 'Sync: also delete what the file does not name'],
            ]}
          />
          <label>
            <input type="checkbox" name="confirm" value="true" />
            I understand that sync deletes the clients (and groups) the file does not name
          </label>
          <details>
            <summary>EMQX settings (its authenticator’s password hash)</summary>
            <Select id="emqxAlgorithm" label="Algorithm" value={values.emqxAlgorithm} options={[['sha256', 'SHA-256'], ['sha512', 'SHA-512'], ['pbkdf2', 'PBKDF2'], ['bcrypt', 'bcrypt']]} />
            <Select id="emqxSaltPosition" label="Salt position" value={values.emqxSaltPosition} options={[['prefix', 'prefix'], ['suffix', 'suffix'], ['disable', 'none']]} />
            <Select id="emqxMacFun" label="PBKDF2 function" value={values.emqxMacFun} options={[['sha256', 'SHA-256'], ['sha512', 'SHA-512'], ['sha1', 'SHA-1']]} />
            <label for="emqxIterations">
              PBKDF2 iterations
              <input id="emqxIterations" name="emqxIterations" type="text" inputmode="numeric" value={values.emqxIterations} maxlength={7} />
            </label>
          </details>
          <progress id="import-progress" value="0" max="100" hidden></progress>
          <div class="form-actions">
            <button type="submit" name="run" value="dry">
              Dry run
            </button>
            <button type="submit" name="run" value="apply" class="secondary">
              Import
            </button>
          </div>
        </form>
      </section>
      {report ? <ImportReportSection report={report} /> : null}
    </Layout>
  );
}

function ImportReportSection(props: { report: ImportReport }) {
  const { report } = props;
  const { counts } = report;
  const summary = `${counts.create} to create, ${counts.update} to update, ${counts.unchanged} unchanged, ${counts.conflict} in conflict, ${counts.error} in error${counts.delete ? `, ${counts.delete} to delete` : ''}.`;
  return (
    <section id="import-report" aria-live="polite">
      <h2>{report.applied ? 'Imported' : report.dryRun ? 'Dry run: nothing was written' : 'Nothing was written'}</h2>
      <p role="status">{summary}</p>
      {!report.applied && !report.dryRun ? <p>Some rows are in error or conflict, and the import is all or nothing: fix them and import again.</p> : null}
      {report.notes.map((note) => (
        <p>
          <small>{note}</small>
        </p>
      ))}
      <div class="table-wrap" tabindex={0} role="region" aria-label="Rows">
        <table>
          <thead>
            <tr>
              <th scope="col">Line</th>
              <th scope="col">Kind</th>
              <th scope="col">Name</th>
              <th scope="col">Action</th>
              <th scope="col">Why</th>
            </tr>
          </thead>
          <tbody>
            {report.rows
              .filter((row) => row.action !== 'unchanged')
              .slice(0, 1000)
              .map((row) => (
                <tr>
                  <td>{row.line || ''}</td>
                  <td>{row.kind}</td>
                  <td>{row.key}</td>
                  <td>{row.action}</td>
                  <td>{row.message ?? ''}</td>
                </tr>
              ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
