/** The credentials every benchmark client uses unless a scenario brings its own fleet. */
export const BENCH_USER = { username: 'bench', password: 'bench-password-0123456789' };
