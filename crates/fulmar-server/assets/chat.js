// Fulmar browser chat: MQTT over WebSocket to the broker that serves this page.
//
// Chat protocol, shared with the terminal client `fulmar chat` (keep the two in step):
//   messages  topic chat/{room}                  QoS 1, not retained
//             payload {"nick":"..","text":"..","ts":<ms since epoch>,"id":"<unique id>"}
//   presence  topic chat/{room}/presence/{nick}  QoS 1, retained
//             payload {"nick":"..","status":"online"|"offline","ts":<ms>}
//   The will is the retained offline presence; a clean leave publishes it, then disconnects.
//   Subscriptions: chat/{room} with No Local (MQTT 5) and chat/{room}/presence/+.
//   Client id: web-{room}-{nick}-{random}.
'use strict';

(() => {
  /** Nick and room become topic levels: no separators, no wildcards, bounded length. */
  const NAME = /^[^/+#\u0000]{1,32}$/;
  /** How many message ids are remembered to drop duplicates (QoS 1 may redeliver). */
  const SEEN_LIMIT = 1000;
  /** Messages kept on screen; older ones are removed. */
  const SHOWN_LIMIT = 500;
  const RECONNECT_MIN_MS = 1000;
  const RECONNECT_MAX_MS = 15000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    joinForm: $('join-form'), nick: $('nick'), room: $('room'), joinError: $('join-error'),
    chat: $('chat'), roomTitle: $('room-title'), status: $('status'),
    members: $('members'), memberCount: $('member-count'), messages: $('messages'),
    sendForm: $('send-form'), message: $('message'), send: $('send'), leave: $('leave'),
  };

  /** The current session, or null when not in a room. */
  let chat = null;

  function randomId(bytes = 8) {
    const buf = new Uint8Array(bytes);
    crypto.getRandomValues(buf);
    return Array.from(buf, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function brokerUrl() {
    const override = new URLSearchParams(location.search).get('broker');
    if (override) return override;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/mqtt`;
  }

  function presencePayload(nick, status) {
    return JSON.stringify({ nick, status, ts: Date.now() });
  }

  // --- rendering ------------------------------------------------------------------------------

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
    ui.send.disabled = state !== 'connected';
  }

  function scrollToEnd() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function append(li) {
    const atEnd = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 40;
    ui.messages.append(li);
    while (ui.messages.children.length > SHOWN_LIMIT) ui.messages.firstElementChild.remove();
    if (atEnd || li.classList.contains('own')) scrollToEnd();
  }

  function notice(text, bad = false) {
    const li = document.createElement('li');
    li.className = bad ? 'notice bad' : 'notice';
    li.textContent = text;
    append(li);
  }

  /** Adds a chat message; all text goes through textContent, never HTML. */
  function showMessage(msg, own) {
    const li = document.createElement('li');
    li.className = own ? 'message own pending' : 'message';
    li.dataset.id = msg.id;
    const nick = document.createElement('span');
    nick.className = 'nick';
    nick.textContent = msg.nick;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = msg.text;
    const time = document.createElement('time');
    const when = new Date(msg.ts);
    time.dateTime = when.toISOString();
    time.title = when.toLocaleString();
    time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    li.append(nick, text, time);
    append(li);
    return li;
  }

  function renderMembers() {
    const nicks = [...chat.members.keys()].sort((a, b) => a.localeCompare(b));
    ui.members.replaceChildren(...nicks.map((nick) => {
      const li = document.createElement('li');
      li.textContent = nick === chat.nick ? `${nick} (you)` : nick;
      li.dataset.nick = nick;
      if (nick === chat.nick) li.className = 'self';
      return li;
    }));
    ui.memberCount.textContent = String(nicks.length);
  }

  // --- incoming -------------------------------------------------------------------------------

  function parse(payload) {
    try {
      return JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return null;
    }
  }

  function remember(id) {
    chat.seen.add(id);
    if (chat.seen.size > SEEN_LIMIT) chat.seen.delete(chat.seen.values().next().value);
  }

  function onChatMessage(payload) {
    const msg = parse(payload);
    if (!msg || typeof msg.nick !== 'string' || typeof msg.text !== 'string'
        || typeof msg.ts !== 'number' || typeof msg.id !== 'string') {
      return; // not ours to show: another tool's or a malformed payload
    }
    // Fallback for brokers without No Local: our own message came back.
    if (chat.ownIds.has(msg.id) || chat.seen.has(msg.id)) return;
    remember(msg.id);
    showMessage(msg, false);
  }

  function onPresence(topic, payload, retained) {
    const nick = topic.slice(chat.presencePrefix.length);
    const presence = payload.length ? parse(payload) : { status: 'offline' };
    if (!presence || !NAME.test(nick)) return;
    const wasOnline = chat.members.has(nick);
    if (presence.status === 'online') {
      chat.members.set(nick, presence.ts);
      if (!wasOnline && !retained && nick !== chat.nick) notice(`${nick} joined`);
    } else {
      // A member's own will or clean leave; our own stale "offline" (from a will published
      // while we were reconnecting) is overridden by our next "online".
      chat.members.delete(nick);
      if (wasOnline && !retained && nick !== chat.nick) notice(`${nick} left`);
    }
    renderMembers();
  }

  // --- session --------------------------------------------------------------------------------

  function join(nick, room) {
    const topic = `chat/${room}`;
    const presenceTopic = `${topic}/presence/${nick}`;
    const client = mqtt.connect(brokerUrl(), {
      protocolVersion: 5,
      clientId: `web-${room}-${nick}-${randomId(4)}`,
      clean: true,
      keepalive: 30,
      connectTimeout: 10000,
      reconnectPeriod: RECONNECT_MIN_MS,
      resubscribe: false, // clean session: we subscribe again on every connect
      will: { topic: presenceTopic, payload: presencePayload(nick, 'offline'), qos: 1, retain: true },
    });
    chat = {
      client, nick, room, topic, presenceTopic,
      presencePrefix: `${topic}/presence/`,
      members: new Map(), seen: new Set(), ownIds: new Set(),
      everConnected: false, leaving: false,
    };
    const session = chat;

    setStatus('connecting', 'connecting…');
    ui.joinForm.hidden = true;
    ui.chat.hidden = false;
    ui.roomTitle.textContent = `#${room}`;
    ui.messages.replaceChildren();
    renderMembers();
    ui.message.focus();

    client.on('connect', () => {
      if (chat !== session) return;
      client.options.reconnectPeriod = RECONNECT_MIN_MS;
      setStatus('connected', `connected as ${nick}`);
      notice(session.everConnected ? 'reconnected' : `joined #${room} as ${nick}`);
      session.everConnected = true;
      // Presence is rebuilt from the retained messages the subscription brings.
      session.members.clear();
      client.subscribe({ [topic]: { qos: 1, nl: true }, [`${topic}/presence/+`]: { qos: 1 } }, (err, granted) => {
        if (err || granted.some((g) => g.qos >= 0x80)) notice('subscription refused by the broker', true);
      });
      client.publish(presenceTopic, presencePayload(nick, 'online'), { qos: 1, retain: true });
    });
    client.on('reconnect', () => {
      if (chat !== session) return;
      setStatus('reconnecting', 'reconnecting…');
      // The will's timestamp is set per CONNECT.
      client.options.will.payload = presencePayload(nick, 'offline');
    });
    client.on('close', () => {
      if (chat !== session || session.leaving) return;
      if (session.everConnected && ui.status.dataset.state === 'connected') {
        notice('connection lost; reconnecting…', true);
      }
      setStatus('offline', 'offline; retrying');
      // Back off: MQTT.js reads reconnectPeriod each time it schedules a retry.
      client.options.reconnectPeriod = Math.min(client.options.reconnectPeriod * 2, RECONNECT_MAX_MS);
    });
    client.on('error', (err) => {
      if (chat === session) notice(`error: ${err.message}`, true);
    });
    client.on('message', (t, payload, packet) => {
      if (chat !== session) return;
      if (t === topic) onChatMessage(payload);
      else if (t.startsWith(session.presencePrefix)) onPresence(t, payload, packet.retain);
    });
  }

  function send(text) {
    const msg = { nick: chat.nick, text, ts: Date.now(), id: `${chat.nick}-${randomId()}` };
    chat.ownIds.add(msg.id);
    const li = showMessage(msg, true);
    // MQTT.js queues the publish while offline and sends it on reconnect.
    chat.client.publish(chat.topic, JSON.stringify(msg), { qos: 1 }, (err) => {
      if (err) {
        li.classList.add('failed');
        li.title = `not delivered: ${err.message}`;
      } else {
        li.classList.remove('pending');
      }
    });
  }

  /** Clean leave: retained offline presence, then DISCONNECT (which discards the will). */
  function leave(done) {
    if (!chat) return;
    const { client, nick, presenceTopic } = chat;
    chat.leaving = true;
    chat = null;
    const end = () => client.end(false, {}, done);
    if (client.connected) {
      client.publish(presenceTopic, presencePayload(nick, 'offline'), { qos: 1, retain: true }, end);
    } else {
      client.end(true, {}, done); // the will marks us offline when the broker notices
    }
  }

  // --- wiring ---------------------------------------------------------------------------------

  ui.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const nick = ui.nick.value.trim();
    const room = ui.room.value.trim();
    if (!NAME.test(nick) || !NAME.test(room)) {
      ui.joinError.textContent = 'Nickname and room: 1 to 32 characters, without / + or #.';
      ui.joinError.hidden = false;
      return;
    }
    ui.joinError.hidden = true;
    try {
      localStorage.setItem('fulmar-chat', JSON.stringify({ nick, room }));
    } catch { /* storage may be disabled; remembering is a convenience */ }
    join(nick, room);
  });

  ui.sendForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = ui.message.value;
    if (!chat || !text.trim()) return;
    send(text);
    ui.message.value = '';
  });

  ui.leave.addEventListener('click', () => {
    leave();
    ui.chat.hidden = true;
    ui.joinForm.hidden = false;
    ui.roomTitle.textContent = '';
    setStatus('idle', 'not connected');
  });

  window.addEventListener('pagehide', () => leave());

  // Prefill from ?nick=&room= or from the last visit.
  const params = new URLSearchParams(location.search);
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem('fulmar-chat') || '{}');
  } catch { /* ignore */ }
  ui.nick.value = params.get('nick') || saved.nick || '';
  ui.room.value = params.get('room') || saved.room || ui.room.value;
  setStatus('idle', 'not connected');
})();
