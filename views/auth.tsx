import type { FieldErrors } from '../src/domain/errors';
import { Field, FormAlert, Layout, Notice } from './layout';

/** `/login`. A plain form: sign-in ends in a full page load anyway. */
export function LoginPage(props: {
  username?: string;
  next?: string | null;
  errors?: FieldErrors;
  /** No administrator exists yet: say where the setup link is. */
  needsSetup?: boolean;
  notice?: string;
}) {
  const errors = props.errors ?? {};
  return (
    <Layout title="Sign in">
      <article class="narrow">
        <header>
          <h1>Sign in</h1>
          <p>The Gatehouse console is for its administrators.</p>
        </header>
        <Notice message={props.notice} />
        {props.needsSetup ? (
          <p role="status" class="notice">
            No administrator exists yet. Open the one-time setup link that Gatehouse printed when it started (
            <code>/setup?token=…</code>), or set <code>ADMIN_USERNAME</code> and <code>ADMIN_PASSWORD</code> and restart it.
          </p>
        ) : null}
        <form method="post" action="/login" novalidate>
          <FormAlert message={errors.form} />
          {props.next ? <input type="hidden" name="next" value={props.next} /> : null}
          <Field label="Username" name="username" value={props.username ?? ''} error={errors.username} required autocomplete="username" maxlength={128} />
          <Field label="Password" name="password" type="password" error={errors.password} required autocomplete="current-password" maxlength={256} />
          <button type="submit">Sign in</button>
        </form>
        <footer>
          <small>
            Locked out? On the server, run <code>npm run admin -- reset-password USERNAME</code>.
          </small>
        </footer>
      </article>
    </Layout>
  );
}

export interface SetupValues {
  username: string;
}

/** `/setup?token=…`: the first administrator. */
export function SetupPage(props: { token: string; values: SetupValues; errors?: FieldErrors }) {
  const errors = props.errors ?? {};
  return (
    <Layout title="First administrator">
      <article class="narrow">
        <header>
          <h1>Create the first administrator</h1>
          <p>This link works once. After this, administrators sign in and add others from the console.</p>
        </header>
        <form method="post" action="/setup" novalidate>
          <FormAlert message={errors.form} />
          <input type="hidden" name="token" value={props.token} />
          <Field
            label="Username"
            name="username"
            value={props.values.username}
            error={errors.username}
            hint="No spaces; case matters."
            required
            maxlength={128}
            autocomplete="username"
          />
          <Field
            label="Password"
            name="password"
            type="password"
            error={errors.password}
            hint="At least 12 characters."
            required
            maxlength={256}
            autocomplete="new-password"
          />
          <Field
            label="Repeat the password"
            name="confirm_password"
            type="password"
            error={errors.confirm_password}
            required
            maxlength={256}
            autocomplete="new-password"
          />
          <button type="submit">Create administrator and sign in</button>
        </form>
      </article>
    </Layout>
  );
}

/** `/setup` without a valid token: nothing happens, and the page says why. */
export function SetupInvalidPage() {
  return (
    <Layout title="Setup link not valid">
      <article class="narrow">
        <h1>This setup link is not valid</h1>
        <p>
          Use the one-time link that Gatehouse printed in its log when it started. A link works once, and only until the first
          administrator exists; restarting Gatehouse without an administrator prints a new one.
        </p>
      </article>
    </Layout>
  );
}
