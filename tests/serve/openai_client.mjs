// The official OpenAI client (npm package "openai") against `strata serve`:
// one chat completion in one piece and one streamed. Run by
// tests/test_serve.c: node openai_client.mjs BASE_URL API_KEY MODEL_ID.
// Prints what it got; exits 1 on anything unexpected.
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, timeout: 30000, maxRetries: 0 });
const messages = [
  { role: "system", content: "You tell short stories." },
  { role: "user", content: "Tell me about Lily." },
];

function fail(why) {
  console.log(`FAIL ${why}`);
  process.exit(1);
}

const models = await client.models.list();
if (models.data.length !== 1 || models.data[0].id !== model) fail(`models: ${JSON.stringify(models.data)}`);

const whole = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
const choice = whole.choices[0];
if (whole.object !== "chat.completion" || choice.message.role !== "assistant") fail(`object: ${JSON.stringify(whole)}`);
if (!["stop", "length"].includes(choice.finish_reason)) fail(`finish_reason ${choice.finish_reason}`);
const u = whole.usage;
if (!(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.total_tokens === u.prompt_tokens + u.completion_tokens))
  fail(`usage ${JSON.stringify(u)}`);
console.log(`non-stream: ${u.completion_tokens} tokens, finish ${choice.finish_reason}: ${JSON.stringify(choice.message.content)}`);

const stream = await client.chat.completions.create({
  model, messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = "", chunks = 0, finish = null, role = null, usage = null;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  const c = chunk.choices[0];
  if (!c) continue;
  if (c.delta.role) role = c.delta.role;
  if (c.delta.content) text += c.delta.content;
  if (c.finish_reason) finish = c.finish_reason;
}
if (role !== "assistant" || !finish || !usage) fail(`stream: role ${role} finish ${finish} usage ${JSON.stringify(usage)}`);
if (text !== choice.message.content) fail(`stream text ${JSON.stringify(text)} differs from ${JSON.stringify(choice.message.content)}`);
console.log(`stream: ${chunks} chunks, finish ${finish}, same text as the non-stream answer`);

try {
  await new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 }).models.list();
  fail("a wrong key was accepted");
} catch (e) {
  if (e.status !== 401) fail(`wrong key: ${e}`);
}
console.log("OK");
