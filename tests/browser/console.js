// Drives the collector's HTML console in headless Chromium as an operator
// would: sign in, read the overview, a host, the host list with its
// filters, a campaign and coverage, by mouse, keyboard and without
// JavaScript, then sign out. Any page error, console error (a Content
// Security Policy violation is one), server error or request leaving the
// collector fails it.
//
// Run by tests/tests/console.rs, which sets BASE (https://localhost:PORT/),
// TOKEN (an operator token), SHOTS (the screenshot folder), ALPHA_ID,
// CAMPAIGN (a started campaign where alpha is overdue), SERVER_CERT (the
// collector's certificate, the only one this browser accepts),
// NODE_EXTRA_CA_CERTS (the collector's CA, for requests Node makes itself),
// CHROMIUM and NODE_PATH (where playwright-core is installed).
'use strict';

const { chromium } = require('playwright-core');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const BASE = env('BASE');
const ORIGIN = new URL(BASE).origin;
const TOKEN = env('TOKEN');
const SHOTS = env('SHOTS');
const ALPHA_ID = env('ALPHA_ID');
const CAMPAIGN = env('CAMPAIGN');
const url = (p) => new URL(p, BASE).toString();

// Everything that went wrong in any page, checked after every step.
const problems = [];
// Responses the test asks for on purpose with an error status: Chromium
// logs those as console errors, which are then expected.
const expectedStatus = new Set();

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

function step(name) {
  if (problems.length) {
    throw new Error(`problems in the pages before "${name}":\n  ${problems.join('\n  ')}`);
  }
  console.log(`step: ${name}`);
}

// The base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as
// Chromium's --ignore-certificate-errors-spki-list wants it: the browser
// accepts this one key and no other certificate it cannot verify.
function spkiHash(pemFile) {
  const cert = new crypto.X509Certificate(fs.readFileSync(pemFile));
  const der = cert.publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('base64');
}

function watch(page, label) {
  page.setDefaultTimeout(10_000);
  page.setDefaultNavigationTimeout(20_000);
  page.on('pageerror', (e) => problems.push(`${label}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const where = m.location().url || '';
    const status = /status of (\d{3})/.exec(m.text());
    const resource = new URL(where, BASE).pathname;
    if (status && expectedStatus.has(`${status[1]} ${resource}`)) return;
    // The browser asks for a favicon on its own; the console need not have one.
    if (resource === '/favicon.ico') return;
    problems.push(`${label}: console error: ${m.text()} (${where})`);
  });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(ORIGIN + '/') && !u.startsWith('data:')) {
      problems.push(`${label}: request leaves the collector: ${r.method()} ${u}`);
    }
  });
  page.on('response', (r) => {
    if (r.status() >= 500) problems.push(`${label}: ${r.status()} for ${r.url()}`);
  });
  page.on('requestfailed', (r) => {
    const why = r.failure() ? r.failure().errorText : '?';
    if (why !== 'net::ERR_ABORTED') problems.push(`${label}: ${r.url()} failed: ${why}`);
  });
  return page;
}

async function shot(page, name) {
  const file = path.join(SHOTS, name);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

// Runs `action` (a click, a key) and waits for the navigation it starts;
// returns the final response (after redirects).
async function navigating(page, action) {
  const [response] = await Promise.all([page.waitForNavigation(), action()]);
  return response;
}

const pathOf = (page) => new URL(page.url()).pathname;
const mainText = (page) => page.locator('main').innerText();

// What every signed-in page has: a skip link, the nav, the sign-out
// button, <main id="content">, and HTML.
async function checkFrame(page, response) {
  check(response && response.ok(), `${page.url()} answered ${response && response.status()}`);
  const type = response.headers()['content-type'] || '';
  check(type.startsWith('text/html'), `${page.url()} is ${type}`);
  check((await page.locator('main#content').count()) === 1, `${page.url()}: one <main id="content">`);
  const nav = page.getByRole('navigation');
  for (const name of ['Overview', 'Hosts', 'Campaigns', 'Coverage']) {
    check(
      (await nav.getByRole('link', { name, exact: true }).count()) === 1,
      `${page.url()}: the nav links to ${name}`,
    );
  }
  check(
    (await page.getByRole('button', { name: 'Sign out', exact: true }).count()) === 1,
    `${page.url()}: a Sign out button`,
  );
  check(
    (await page.getByRole('link', { name: /skip to content/i }).count()) === 1,
    `${page.url()}: a Skip to content link`,
  );
}

async function navTo(page, name) {
  const nav = page.getByRole('navigation');
  return navigating(page, () => nav.getByRole('link', { name, exact: true }).click());
}

// The hostnames in the first table of <main>, in order.
async function tableHosts(page) {
  const text = await page.locator('main table').first().innerText();
  return ['alpha', 'bravo'].filter((h) => text.includes(h)).sort((a, b) => text.indexOf(a) - text.indexOf(b));
}

async function signIn(page, token) {
  await page.fill('#token', token);
  return navigating(page, () => page.press('#token', 'Enter'));
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM'),
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      `--ignore-certificate-errors-spki-list=${spkiHash(env('SERVER_CERT'))}`,
    ],
  });
  try {
    await operator(browser);
    await withoutJavaScript(browser);
  } finally {
    await browser.close();
  }
  step('done');
}

async function operator(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = watch(await context.newPage(), 'operator');
  const session = async () => (await context.cookies()).find((c) => c.name === 'muster_session');
  try {
    step('without a session, the console is the sign-in page');
    let r = await page.goto(BASE);
    check(pathOf(page) === '/signin', `GET / ends on ${page.url()}`);
    check(r.status() === 200, `the sign-in page answers ${r.status()}`);
    const token = page.locator('input#token');
    check((await token.getAttribute('name')) === 'token', 'the token field is named token');
    check((await token.getAttribute('type')) === 'password', 'the token field is a password field');
    check((await page.getByLabel(/token/i).count()) >= 1, 'the token field has a label');
    await shot(page, 'signin.png');

    step('a wrong token stays on the sign-in page with an error and no cookie');
    expectedStatus.add('401 /signin');
    r = await signIn(page, 'not-a-token');
    check(r.status() === 401, `a wrong token answers ${r.status()}`);
    check(pathOf(page) === '/signin', `a wrong token ends on ${page.url()}`);
    const alert = page.getByRole('alert');
    check(await alert.first().isVisible(), 'a visible role=alert message');
    check((await alert.first().innerText()).trim().length > 0, 'the alert says something');
    check((await session()) === undefined, 'no session cookie after a wrong token');
    await shot(page, 'signin-refused.png');

    step('the right token opens the overview with a strict session cookie');
    r = await signIn(page, TOKEN);
    check(pathOf(page) === '/', `signing in ends on ${page.url()}`);
    await checkFrame(page, r);
    const cookie = await session();
    check(cookie !== undefined, `a muster_session cookie: ${JSON.stringify(await context.cookies())}`);
    check(cookie.httpOnly === true, 'the session cookie is HttpOnly');
    check(cookie.secure === true, 'the session cookie is Secure');
    check(cookie.sameSite === 'Strict', `the session cookie is SameSite=${cookie.sameSite}`);
    check(!cookie.value.includes(TOKEN), 'the cookie is not the token');

    step('the overview shows the banned product, alpha and a chart');
    let text = await mainText(page);
    check(text.includes('Kaspersky'), `the overview names Kaspersky:\n${text}`);
    const alphaLink = page.locator('main').getByRole('link', { name: 'alpha', exact: true }).first();
    check(await alphaLink.isVisible(), 'the overview links to alpha');
    check((await page.locator('main svg').count()) >= 1, 'the overview has a chart');
    await shot(page, 'overview.png');

    step('alpha links to its host page: evidence, detections, timeline');
    r = await navigating(page, () => alphaLink.click());
    check(pathOf(page) === `/hosts/${ALPHA_ID}`, `alpha's link leads to ${page.url()}`);
    await checkFrame(page, r);
    text = await mainText(page);
    check(text.includes('alpha'), 'the host page names the host');
    check(text.includes('kesl'), `the host page shows the evidence kesl:\n${text}`);
    check((await page.locator('main table').count()) >= 1, 'a detections table');
    check(
      (await page.getByRole('heading', { name: /timeline/i }).count()) >= 1,
      'a timeline heading',
    );
    await shot(page, 'host.png');

    step('the host list, its filters and its sort');
    r = await navTo(page, 'Hosts');
    check(pathOf(page) === '/hosts', `the Hosts link leads to ${page.url()}`);
    await checkFrame(page, r);
    check(
      JSON.stringify(await tableHosts(page)) === '["alpha","bravo"]',
      `the list shows alpha then bravo: ${await tableHosts(page)}`,
    );
    await shot(page, 'hosts.png');
    const form = page.locator('main form:has([name="vendor"])');
    check((await form.count()) === 1, 'one filter form');
    check((await form.evaluate((f) => f.method)) === 'get', 'the filter form is GET');
    for (const field of ['name', 'vendor', 'product', 'category', 'state', 'os', 'violates', 'stale']) {
      check((await form.locator(`[name="${field}"]`).count()) === 1, `the filter form has ${field}`);
    }
    const vendor = form.locator('[name="vendor"]');
    if ((await vendor.evaluate((e) => e.tagName)) === 'SELECT') {
      const value = await vendor.evaluate(
        (s) => [...s.options].find((o) => /kaspersky/i.test(o.value + o.text)).value,
      );
      await vendor.selectOption(value);
    } else {
      await vendor.fill('kaspersky');
    }
    const submit = form.locator('button[type="submit"], input[type="submit"], button:not([type])');
    r = await navigating(page, () => submit.first().click());
    check(r.status() === 200, `the filtered list answers ${r.status()}`);
    check(/kaspersky/i.test(new URL(page.url()).searchParams.get('vendor') || ''), `${page.url()}`);
    check(
      JSON.stringify(await tableHosts(page)) === '["alpha"]',
      `filtered by vendor, alpha alone: ${await tableHosts(page)}`,
    );
    await shot(page, 'hosts-kaspersky.png');

    expectedStatus.add('400 /hosts');
    r = await page.goto(url('/hosts?state=bogus'));
    check(r.status() === 400, `a bad filter answers ${r.status()}`);
    const error = page.getByRole('alert');
    check((await error.count()) >= 1, 'a bad filter shows a role=alert message');
    check((await error.first().innerText()).includes('state'), 'the message names state');
    await shot(page, 'hosts-bad-filter.png');

    r = await page.goto(url('/hosts'));
    const sortLinks = page.locator('main table a[href*="sort="]');
    check((await sortLinks.count()) >= 1, 'the table has sorting links');
    const byName = page.locator('main table th a[href*="hostname"]').first();
    r = await navigating(page, () => byName.click());
    check(r.status() === 200, `sorting answers ${r.status()}`);
    check(new URL(page.url()).searchParams.has('sort'), `sorting by a header link: ${page.url()}`);
    for (const [sort, order] of [['-hostname', '["bravo","alpha"]'], ['hostname', '["alpha","bravo"]']]) {
      r = await page.goto(url(`/hosts?sort=${sort}`));
      check(r.status() === 200, `sort=${sort} answers ${r.status()}`);
      check(JSON.stringify(await tableHosts(page)) === order, `sort=${sort}: ${await tableHosts(page)}`);
    }

    step('a campaign: burn-down, overdue alpha, the report to download');
    r = await navTo(page, 'Campaigns');
    check(pathOf(page) === '/campaigns', `the Campaigns link leads to ${page.url()}`);
    await checkFrame(page, r);
    r = await navigating(page, () =>
      page.locator('main').getByRole('link', { name: CAMPAIGN, exact: true }).first().click(),
    );
    check(pathOf(page) === `/campaigns/${CAMPAIGN}`, `the campaign link leads to ${page.url()}`);
    await checkFrame(page, r);
    check((await page.locator('main svg').count()) >= 1, 'a burn-down chart');
    check((await mainText(page)).includes('alpha'), 'the campaign names alpha');
    const report = page.getByRole('link', { name: 'Download the HTML report' });
    const href = await report.getAttribute('href');
    check(href && href.endsWith('/report'), `the report link is ${href}`);
    // Clicked, it downloads instead of replacing the console.
    const [saved] = await Promise.all([page.waitForEvent('download'), report.click()]);
    check(pathOf(page) === `/campaigns/${CAMPAIGN}`, `the console stays on the campaign: ${page.url()}`);
    check(
      fs.readFileSync(await saved.path(), 'utf8').includes('alpha'),
      `the downloaded report (${saved.suggestedFilename()}) names alpha`,
    );
    // Its headers, asked for by Node with the session's cookie (Node trusts
    // the collector's CA through NODE_EXTRA_CA_CERTS).
    const download = await page.request.get(new URL(href, page.url()).toString());
    check(download.status() === 200, `the report answers ${download.status()}`);
    const headers = download.headers();
    check((headers['content-type'] || '').startsWith('text/html'), `the report is ${headers['content-type']}`);
    check(
      (headers['content-disposition'] || '').startsWith('attachment'),
      `the report is a download: ${headers['content-disposition']}`,
    );
    check((await download.text()).includes('alpha'), 'the report names alpha');
    await shot(page, 'campaign.png');

    step('coverage lists the asset without agent');
    r = await navTo(page, 'Coverage');
    check(pathOf(page) === '/coverage', `the Coverage link leads to ${page.url()}`);
    await checkFrame(page, r);
    check((await mainText(page)).includes('charlie'), 'coverage names charlie');
    await shot(page, 'coverage.png');

    step('the keyboard: Tab first reaches a link, the skip link goes to the content');
    await page.goto(BASE);
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => ({
      tag: document.activeElement.tagName,
      text: document.activeElement.textContent.trim(),
    }));
    check(first.tag === 'A', `Tab first focuses a ${first.tag} (${first.text})`);
    check(
      /skip to content/i.test(first.text) || ['Overview', 'Hosts', 'Campaigns', 'Coverage'].includes(first.text),
      `Tab first focuses "${first.text}"`,
    );
    if (/skip to content/i.test(first.text)) {
      await page.keyboard.press('Enter');
      await page.waitForURL(/#content$/);
    }
    // Everything is reachable: Tab from the top gets to the sign-out button.
    await page.goto(BASE);
    let reached = false;
    for (let i = 0; i < 200 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => /sign out/i.test(document.activeElement.textContent || ''));
    }
    check(reached, 'Tab reaches the Sign out button');

    step('signing out ends the session on the server');
    const old = await session();
    await page.goto(BASE);
    r = await navigating(page, () => page.getByRole('button', { name: 'Sign out', exact: true }).click());
    check(pathOf(page) === '/signin', `signing out ends on ${page.url()}`);
    await page.goto(BASE);
    check(pathOf(page) === '/signin', `after signing out, / ends on ${page.url()}`);
    const replay = await browser.newContext();
    await replay.addCookies([{ ...old, expires: -1 }]);
    const again = watch(await replay.newPage(), 'old cookie');
    await again.goto(BASE);
    check(pathOf(again) === '/signin', `the old cookie, replayed, ends on ${again.url()}`);
    await replay.close();
  } catch (e) {
    await shot(page, 'failure.png').catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}

async function withoutJavaScript(browser) {
  step('without JavaScript: a link to a host, sign in, the host, the overview');
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = watch(await context.newPage(), 'no-js');
  try {
    // A link someone sent: signing in leads back to it.
    await page.goto(url(`/hosts/${ALPHA_ID}`));
    check(pathOf(page) === '/signin', `a host page without a session ends on ${page.url()}`);
    let r = await signIn(page, TOKEN);
    check(pathOf(page) === `/hosts/${ALPHA_ID}`, `signing in without JavaScript ends on ${page.url()}`);
    await checkFrame(page, r);
    check((await mainText(page)).includes('kesl'), 'the host page shows kesl');
    await shot(page, 'host-nojs.png');
    r = await navTo(page, 'Overview');
    check(pathOf(page) === '/', `the Overview link leads to ${page.url()}`);
    await checkFrame(page, r);
    check((await mainText(page)).includes('Kaspersky'), 'the overview names Kaspersky');
  } catch (e) {
    await shot(page, 'failure-nojs.png').catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  if (problems.length) console.error(`problems in the pages:\n  ${problems.join('\n  ')}`);
  process.exit(1);
});
