import { type Context, Hono } from 'hono';
import { createApiToken, getApiToken, listApiTokens, revokeApiToken, TOKEN_RESOURCES } from '../domain/apiTokens';
import { ConflictError, ValidationError } from '../domain/errors';
import { NotFoundPage, Notice } from '../../views/layout';
import { BLANK_TOKEN_FORM, NewTokenPage, RevokeTokenPage, TokenCreatedPage, TokensPage, type TokenFormValues } from '../../views/tokens';
import type { AppEnv } from './env';
import { isHtmx, parseId, readForm, redirectAfterPost } from './http';

const NOTICES: Record<string, string> = {
  revoked: 'Token revoked: it is refused from now on, on every node.',
};

/** `/tokens`: API tokens, for administrators only (never reachable with a token). */
export function tokenRoutes() {
  const tokens = new Hono<AppEnv>();

  tokens.get('/', async (c) => c.html(<TokensPage tokens={await listApiTokens(c.var.db)} notice={NOTICES[c.req.query('notice') ?? '']} />));

  tokens.get('/new', (c) => c.html(<NewTokenPage values={BLANK_TOKEN_FORM} />));

  // A plain form post answered with the page that shows the token once (no
  // redirect: the secret must not travel in a URL or be kept anywhere).
  tokens.post('/', async (c) => {
    const form = await readForm(c);
    const values: TokenFormValues = {
      name: form.name ?? '',
      preset: form.preset ?? '',
      scopes: Object.fromEntries(TOKEN_RESOURCES.map((r) => [r, form[`scope-${r}`] ?? 'none'])),
      expiresInDays: form.expiresInDays ?? '',
      allowedAddresses: form.allowedAddresses ?? '',
    };
    try {
      const created = await createApiToken(c.var.db, values, c.var.actor);
      c.header('Cache-Control', 'no-store');
      return c.html(<TokenCreatedPage token={created.token} secret={created.secret} />, 201);
    } catch (error) {
      if (!(error instanceof ValidationError || error instanceof ConflictError)) throw error;
      return c.html(<NewTokenPage values={values} errors={error.fieldErrors} />, error instanceof ConflictError ? 409 : 422);
    }
  });

  tokens.get('/:id/revoke', async (c) => {
    const id = parseId(c.req.param('id'));
    const token = id === null ? null : await getApiToken(c.var.db, id);
    if (!token) return notFound(c);
    return c.html(<RevokeTokenPage token={token} />);
  });

  tokens.post('/:id/revoke', async (c) => {
    const id = parseId(c.req.param('id'));
    const revoked = id === null ? null : await revokeApiToken(c.var.db, id, c.var.actor);
    if (!revoked) return notFound(c);
    return redirectAfterPost(c, '/tokens?notice=revoked');
  });

  // From the row menu (htmx): the row goes, the notice says so.
  tokens.delete('/:id', async (c) => {
    const id = parseId(c.req.param('id'));
    const revoked = id === null ? null : await revokeApiToken(c.var.db, id, c.var.actor);
    if (!revoked) return notFound(c);
    if (!isHtmx(c)) return redirectAfterPost(c, '/tokens?notice=revoked');
    return c.html(
      <hx-partial hx-target="#tokens-notice" hx-swap="innerHTML">
        <Notice message={`Token “${revoked.name}” revoked: it is refused from now on, on every node.`} />
      </hx-partial>,
    );
  });

  return tokens;
}

function notFound(c: Context<AppEnv>) {
  return c.html(<NotFoundPage message="This token does not exist (it may have been revoked)." section="tokens" />, 404);
}
