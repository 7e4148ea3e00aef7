// A chat room with presence. Run two of these in two terminals and type:
//
//   node examples/chat.mjs --name alice [--room lobby] [--url ws://127.0.0.1:8080/ws]
//
// Shows the last 20 messages, then live ones; `/who` lists who is here. Ends on EOF (Ctrl-D).
import readline from 'node:readline';
import { connect } from 'arqonbus';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const url = arg('url', 'ws://127.0.0.1:8080/ws');
const room = arg('room', 'lobby');
const name = arg('name', `guest-${Math.floor(Math.random() * 1000)}`);

const bus = connect(url);
bus.on('reconnecting', ({ delayMs }) => console.log(`* connection lost, retrying in ${delayMs} ms`));
bus.on('resumed', () => console.log('* back online'));
await bus.ready();

// Join/leave notices need a channel declared with presence_events (the first chatter declares it).
await bus.createChannel(room, 'chat', { presence_events: true, history_size: 1000 }).catch((err) => {
  if (err.code !== 'CHANNEL_EXISTS') throw err;
});

// Names by client id, learned from the messages.
const names = new Map();
const show = (e, live) => {
  names.set(e.from, e.payload.name);
  if (e.payload.text) console.log(`[${e.timestamp.slice(11, 19)}] ${e.payload.name}: ${e.payload.text}`);
  else if (live && e.from !== bus.clientId) console.log(`* ${e.payload.name} joined`);
};

// The last 20 messages, then everything after them with no gap and no duplicate.
const recent = await bus.history(room, 'chat', { limit: 20 });
recent.events.forEach((e) => show(e, false));
const since = recent.events.length ? { offset: recent.events.at(-1).offset, epoch: recent.epoch } : undefined;
const chat = bus.subscribe(room, 'chat', since ? { since } : {});
chat.on('leave', (p) => console.log(`* ${names.get(p.client_id) ?? 'someone'} left`));
await chat.ready;
await bus.publish(room, 'chat', { name, text: null }); // tells the others our name
const here = await bus.presence(room, 'chat');
console.log(`* ${name} in ${room}: ${here.count} here`);

const printing = (async () => {
  for await (const d of chat) {
    if (d.type === 'gap') console.log(`* ${d.to === null ? 'some' : d.to - d.from + 1} messages were lost`);
    else show(d, true);
  }
})();

const input = readline.createInterface({ input: process.stdin });
for await (const line of input) {
  if (line === '/who') {
    const { clients } = await bus.presence(room, 'chat');
    console.log(`* here: ${clients.map((c) => names.get(c.client_id) ?? c.client_id).join(', ')}`);
  } else if (line.trim()) {
    await bus.publish(room, 'chat', { name, text: line });
  }
}
await bus.close();
await printing;
