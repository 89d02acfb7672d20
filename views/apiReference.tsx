import { Layout, PageTitle } from './layout';

interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  security?: Array<Record<string, string[]>>;
  parameters?: Array<{ name: string; in: string; required?: boolean; description?: string }>;
  requestBody?: { content?: Record<string, { schema?: { $ref?: string } }> };
  responses?: Record<string, { description?: string }>;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

/**
 * A readable reference of the API, rendered on the server from the OpenAPI
 * document itself (no script: the console's CSP allows none inline, and the
 * document is the source of truth).
 */
export function ApiReferencePage(props: { document: { paths?: object } }) {
  const operations = Object.entries((props.document.paths ?? {}) as Record<string, Record<string, unknown>>).flatMap(([path, item]) =>
    METHODS.filter((method) => item[method]).map((method) => ({ path, method, operation: item[method] as Operation })),
  );
  return (
    <Layout title="API reference" section="tokens">
      <PageTitle title="API reference">
        <code>/api/v1</code>, with <code>Authorization: Bearer &lt;token&gt;</code> (create tokens on the <a href="/tokens">API tokens</a> page). The
        machine-readable document: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).
      </PageTitle>
      {operations.map(({ path, method, operation }) => {
        const scopes = (operation.security ?? []).flatMap((s) => Object.values(s).flat());
        const body = Object.entries(operation.requestBody?.content ?? {});
        return (
          <section id={`${method}-${path.replace(/[^a-z0-9]+/gi, '-')}`}>
            <h2>
              <code>
                {method.toUpperCase()} /api/v1{path}
              </code>
            </h2>
            <p>{operation.summary}</p>
            {operation.description ? <p>{operation.description}</p> : null}
            <p>
              <small>Scope: {scopes.length ? scopes.join(', ') : 'any token'}</small>
            </p>
            {operation.parameters?.length ? (
              <ul>
                {operation.parameters.map((p) => (
                  <li>
                    <code>{p.name}</code> ({p.in}
                    {p.required ? ', required' : ''}){p.description ? `: ${p.description}` : ''}
                  </li>
                ))}
              </ul>
            ) : null}
            {body.length ? (
              <p>
                Body: {body.map(([type, media]) => `${type}${media.schema?.$ref ? ` (${media.schema.$ref.split('/').pop()})` : ''}`).join(', ')}
              </p>
            ) : null}
            <p>
              <small>
                Answers:{' '}
                {Object.entries(operation.responses ?? {})
                  .map(([status, response]) => `${status} ${response.description ?? ''}`.trim())
                  .join(' · ')}
              </small>
            </p>
          </section>
        );
      })}
    </Layout>
  );
}
