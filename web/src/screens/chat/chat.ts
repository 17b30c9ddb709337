// The chat screen: recent chats, one open conversation, the composer, the assistant, and
// everything the Connect stream says about them. It is the one screen still built with the
// hand-made DOM layer (dom.ts): it holds no routing, and its state lives in this class,
// which the Preact shell mounts once and keeps alive while other screens are shown (so the
// Connect stream and a reply being streamed survive a visit to Documents). "Ask with
// documents": the assistant chat picks collections (ListCollections) for ReplyRequest.collections,
// and a grounded reply shows its citations as numbered chips that open to the passage.

import { Code } from "@connectrpc/connect";
import { ConversationKind, type Conversation } from "@chatmesh/sdk/chatmesh/history/v1/history_pb.js";
import { Direction } from "@chatmesh/sdk/chatmesh/common/v1/common_pb.js";
import type { Event } from "@chatmesh/sdk/chatmesh/events/v1/events_pb.js";
import { PresenceState, type UserPresence } from "@chatmesh/sdk/chatmesh/presence/v1/presence_pb.js";
import { FinishReason } from "@chatmesh/sdk/chatmesh/inference/v1/inference_pb.js";
import { IngestService } from "@chatmesh/sdk/chatmesh/ingest/v1/ingest_pb.js";
import { type Action, type Api, type Auth, codeOf, describeError, millis } from "../../api.js";
import { EventStream, type ConnectionState } from "./events.js";
import {
  citationView,
  conversationView,
  messageView,
  newThread,
  newestSequence,
  ordered,
  peersOf,
  relativeTime,
  tickOf,
  titleOf,
  upsert,
  uuid,
  type CitationView,
  type ConversationView,
  type Thread,
} from "./model.js";
import { h } from "../../dom.js";

const PAGE_SIZE = 30;
const TYPING_REPEAT_MS = 3_000;
// Longest assistant reply, in tokens (the service's default is 256).
const REPLY_MAX_TOKENS = 512;
// Collections one reply may answer from (ReplyRequest.collections).
const MAX_REPLY_COLLECTIONS = 8;
// Where the collections picked for each assistant chat are kept (this browser only).
const CHOSEN_KEY = "chatmesh.assistant-collections";
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class ChatApp {
  private readonly me: string;
  private readonly conversations = new Map<string, ConversationView>();
  private readonly threads = new Map<string, Thread>();
  private readonly presence = new Map<string, UserPresence>();
  /** Display names by user id (LookupUsers); members carry only ids. */
  private readonly names = new Map<string, string>();
  private readonly typing = new Map<string, Map<string, number>>();
  private openId: string | null = null;
  private connection: ConnectionState = "connecting";
  private readonly stream: EventStream;
  private replyAbort: AbortController | null = null;
  /** Replies that have ended (stored, stopped or failed): late tokens of theirs start no bubble. */
  private readonly endedReplies = new Set<string>();
  private lastTypingSent = 0;
  /** The caller's collections (ListCollections), null until read. */
  private myCollections: string[] | null = null;
  private collectionsError = "";
  /** The collections picked per assistant conversation ("ask with documents"). */
  private readonly chosen = new Map<string, Set<string>>(loadChosen());
  /** Citation chips opened to their passage: `${message key}#${number}`. */
  private readonly openCitations = new Set<string>();
  /** False while the shell shows another screen: nothing counts as read then. */
  private shown = true;
  private markingRead = false;
  private renderQueued = false;
  private clock: number;
  private readonly root: HTMLElement;
  private readonly els: {
    me: HTMLElement;
    collections: HTMLElement;
    conn: HTMLElement;
    list: HTMLElement;
    error: HTMLElement;
    title: HTMLElement;
    presence: HTMLElement;
    typing: HTMLElement;
    messages: HTMLElement;
    older: HTMLButtonElement;
    composer: HTMLFormElement;
    input: HTMLTextAreaElement;
    stop: HTMLButtonElement;
    chat: HTMLElement;
  };

  constructor(
    private readonly api: Api,
    private readonly auth: Auth,
    private readonly onLogout: () => void,
  ) {
    this.me = auth.userId;
    this.els = {
      // The display name (the username until LookupUsers answers), never the account's UUID.
      me: h("strong", { "data-testid": "me", "data-user-id": auth.userId }, auth.username),
      // "Ask with documents": the caller's collections, picked per assistant chat; replies
      // then go with ReplyRequest.collections. Shown in the assistant chat only.
      collections: h("div", { class: "collections-picker", "data-testid": "assistant-collections", hidden: "" }),
      conn: h("span", { class: "conn", "data-testid": "connection-state" }),
      list: h("ul", { class: "conversations", "data-testid": "conversations" }),
      error: h("div", { class: "error", role: "alert", "data-testid": "error" }),
      title: h("h2", { "data-testid": "chat-title" }),
      presence: h("span", { class: "presence", "data-testid": "presence" }),
      typing: h("span", { class: "typing", "data-testid": "typing" }),
      messages: h("div", { class: "messages", "data-testid": "messages" }),
      older: h("button", { type: "button", class: "older", "data-testid": "load-older" }, "Load older messages"),
      composer: h("form", { class: "composer" }),
      input: h("textarea", { rows: "2", placeholder: "Write a message", "data-testid": "composer" }),
      stop: h("button", { type: "button", class: "stop", "data-testid": "stop", hidden: "" }, "Stop"),
      chat: h("section", { class: "chat empty" }),
    };
    this.root = this.build();
    this.stream = new EventStream(
      api,
      {
        onEvent: (e) => this.onEvent(e),
        onState: (s) => {
          this.connection = s;
          this.render();
        },
        onLive: (resumed) => void this.onLive(resumed),
        onLoggedOut: () => this.onLogout(),
      },
      auth.deviceId,
    );
    this.clock = window.setInterval(() => this.render(), 30_000);
  }

  mount(parent: HTMLElement): void {
    parent.replaceChildren(this.root);
    this.render();
    void this.loadMyName();
    // The chats first, so the stream opens watching their members' presence (a later
    // change of that list reopens the stream); read again once live, for the gap between.
    void this.loadConversations().finally(() => this.stream.start());
  }

  /** The shell shows this screen (true) or another one (false). */
  setShown(shown: boolean): void {
    if (shown === this.shown) return;
    this.shown = shown;
    if (shown) {
      // Collections made on the Documents screen meanwhile show in the picker.
      if (this.myCollections !== null) void this.loadCollections();
      this.render(true);
      this.markReadSoon();
    }
  }

  destroy(): void {
    this.stream.stop();
    this.replyAbort?.abort();
    window.clearInterval(this.clock);
  }

  // -- building the page -------------------------------------------------------------

  private build(): HTMLElement {
    const e = this.els;
    const newChat = h("input", { placeholder: "Username", "data-testid": "new-chat-username", autocomplete: "off" });
    const newChatForm = h(
      "form",
      { class: "new-chat" },
      newChat,
      h("button", { type: "submit", "data-testid": "new-chat" }, "Start chat"),
    );
    newChatForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.startChat(newChat.value.trim()).then((ok) => {
        if (ok) newChat.value = "";
      });
    });
    const assistant = h("button", { type: "button", "data-testid": "assistant" }, "Ask the assistant");
    assistant.addEventListener("click", () => void this.openAssistant());
    const logout = h("button", { type: "button", class: "link", "data-testid": "logout" }, "Log out");
    logout.addEventListener("click", () => void this.logout());
    const me = h("div", { class: "me" }, e.me, e.conn, logout);
    const sidebar = h("aside", { class: "sidebar" }, me, newChatForm, assistant, e.list);

    e.older.addEventListener("click", () => void this.loadOlder());
    e.messages.addEventListener("scroll", () => {
      if (e.messages.scrollTop < 40) void this.loadOlder();
    });
    e.input.addEventListener("input", () => this.onTyping());
    e.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) {
        ev.preventDefault();
        e.composer.requestSubmit();
      }
    });
    e.composer.append(e.input, h("button", { type: "submit", "data-testid": "send" }, "Send"));
    e.composer.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.send();
    });
    e.stop.addEventListener("click", () => void this.stopReply());
    e.chat.append(
      h("header", {}, e.title, e.presence, e.typing),
      e.collections,
      e.messages,
      h("div", { class: "assistant-bar" }, e.stop),
      e.composer,
    );
    document.addEventListener("visibilitychange", () => this.markReadSoon());
    return h("div", { class: "main" }, sidebar, h("div", { class: "pane" }, e.error, e.chat));
  }

  // -- loading ----------------------------------------------------------------------

  private async loadMyName(): Promise<void> {
    try {
      const reply = await this.api.call(() => this.api.session.lookupUsers({ userIds: [this.me] }));
      const mine = reply.users.find((u) => u.userId === this.me);
      if (mine) this.els.me.textContent = mine.displayName || mine.username || this.auth.username;
    } catch {
      // The username from login stays.
    }
  }

  private async onLive(resumed: boolean): Promise<void> {
    // A reopened stream's predecessor reports the device gone when it ends, which may land
    // after the new stream's first heartbeat: say it is here again.
    window.setTimeout(() => void this.api.presence.heartbeat({ active: true }).catch(() => undefined), 1_000);
    await this.loadConversations();
    // Missed events were replayed on the stream; a page read covers a tab that had no
    // position yet (it connected with 0: new events only).
    if (this.openId && (resumed || !this.threads.get(this.openId)?.loaded)) await this.loadNewest(this.openId);
  }

  private async loadConversations(): Promise<void> {
    try {
      const reply = await this.api.call(() => this.api.history.listConversations({ page: { pageSize: 100 } }));
      for (const c of reply.conversations) this.putConversation(c);
      await Promise.all([this.loadPresence(), this.loadNames()]);
      this.render();
    } catch (e) {
      this.showError("load", e);
    }
  }

  private putConversation(c: Conversation): ConversationView {
    const view = conversationView(c);
    this.conversations.set(view.id, view);
    return view;
  }

  private peerIds(): string[] {
    const ids = new Set<string>();
    for (const c of this.conversations.values()) for (const p of peersOf(c, this.me)) ids.add(p.userId);
    return [...ids];
  }

  private async loadPresence(): Promise<void> {
    const ids = this.peerIds().slice(0, 500);
    this.stream.setWatch(ids);
    if (ids.length === 0) return;
    const reply = await this.api.call(() => this.api.presence.getPresence({ userIds: ids }));
    for (const p of reply.presences) this.presence.set(p.userId, p);
  }

  private thread(id: string): Thread {
    let t = this.threads.get(id);
    if (!t) {
      t = newThread();
      this.threads.set(id, t);
    }
    return t;
  }

  private async loadNewest(id: string): Promise<void> {
    const thread = this.thread(id);
    try {
      const reply = await this.api.call(() =>
        this.api.history.listMessages({
          conversationId: id,
          page: { pageSize: PAGE_SIZE },
          direction: Direction.BACKWARD,
        }),
      );
      for (const m of reply.messages) upsert(thread, messageView(m));
      if (!thread.loaded) thread.olderToken = reply.page?.nextPageToken ?? "";
      thread.loaded = true;
      this.render();
      this.markReadSoon();
    } catch (e) {
      this.showError("load", e);
    }
  }

  private async loadOlder(): Promise<void> {
    const id = this.openId;
    if (!id) return;
    const thread = this.thread(id);
    if (!thread.loaded || !thread.olderToken || thread.loadingOlder) return;
    thread.loadingOlder = true;
    const box = this.els.messages;
    const fromBottom = box.scrollHeight - box.scrollTop;
    try {
      const reply = await this.api.call(() =>
        this.api.history.listMessages({
          conversationId: id,
          page: { pageSize: PAGE_SIZE, pageToken: thread.olderToken },
          direction: Direction.BACKWARD,
        }),
      );
      for (const m of reply.messages) upsert(thread, messageView(m));
      thread.olderToken = reply.page?.nextPageToken ?? "";
      this.renderNow();
      box.scrollTop = box.scrollHeight - fromBottom; // keep what the person was looking at in place
    } catch (e) {
      this.showError("load", e);
    } finally {
      thread.loadingOlder = false;
    }
  }

  // -- actions ------------------------------------------------------------------------

  private async open(id: string): Promise<void> {
    this.openId = id;
    this.els.input.value = "";
    this.clearError();
    this.render(true);
    if (this.conversations.get(id)?.kind === ConversationKind.ASSISTANT) void this.loadCollections();
    const thread = this.thread(id);
    if (!thread.loaded) await this.loadNewest(id);
    this.render(true);
    this.markReadSoon();
    this.els.input.focus();
  }

  // -- ask with documents -------------------------------------------------------------

  /** Reads the caller's collections for the picker (ingest ListCollections). */
  private async loadCollections(): Promise<void> {
    try {
      const names: string[] = [];
      let pageToken = "";
      do {
        const reply = await this.api.call(() =>
          this.api.client(IngestService).listCollections({ page: { pageSize: 100, pageToken } }),
        );
        names.push(...reply.collections.map((c) => c.name));
        pageToken = reply.page?.nextPageToken ?? "";
      } while (pageToken);
      this.myCollections = names.sort();
      this.collectionsError = "";
    } catch (e) {
      this.collectionsError = describeError("load", e);
    }
    this.render();
  }

  /** The collections a reply in this conversation answers from: picked ones that still exist. */
  private chosenFor(conversationId: string): string[] {
    const picked = [...(this.chosen.get(conversationId) ?? [])];
    const known = this.myCollections;
    return (known ? picked.filter((n) => known.includes(n)) : picked).slice(0, MAX_REPLY_COLLECTIONS);
  }

  private toggleCollection(conversationId: string, name: string, on: boolean): void {
    const set = this.chosen.get(conversationId) ?? new Set<string>();
    if (on && set.size >= MAX_REPLY_COLLECTIONS) {
      this.setError(`A reply answers from at most ${MAX_REPLY_COLLECTIONS} collections.`);
    } else if (on) set.add(name);
    else set.delete(name);
    this.chosen.set(conversationId, set);
    saveChosen(this.chosen);
    this.render();
  }

  private renderPicker(conversationId: string): void {
    const el = this.els.collections;
    const label = h("span", { class: "label" }, "Answer from documents:");
    if (this.collectionsError) {
      el.replaceChildren(label, h("span", { class: "hint" }, this.collectionsError));
      return;
    }
    if (this.myCollections === null) {
      el.replaceChildren(label, h("span", { class: "hint" }, "reading your collections…"));
      return;
    }
    if (this.myCollections.length === 0) {
      el.replaceChildren(label, h("span", { class: "hint", "data-testid": "no-collections" }, "no collections yet (add documents on the Documents screen)"));
      return;
    }
    const picked = new Set(this.chosenFor(conversationId));
    const choices = this.myCollections.map((name) => {
      const box = h("input", { type: "checkbox", "data-testid": "collection-choice", "data-name": name });
      box.checked = picked.has(name);
      box.addEventListener("change", () => this.toggleCollection(conversationId, name, box.checked));
      return h("label", { class: `choice${box.checked ? " on" : ""}` }, box, name);
    });
    const state = h(
      "span",
      { class: "hint", "data-testid": "grounding-state" },
      picked.size ? `replies cite ${[...picked].join(", ")}` : "off: the assistant answers on its own",
    );
    el.replaceChildren(label, ...choices, state);
  }

  /** Numbered chips under a grounded reply; a chip opens its passage, with source and score. */
  private citationsOf(key: string, citations: CitationView[]): HTMLElement | string {
    if (citations.length === 0) return "";
    const chips = citations.map((c) => {
      const id = `${key}#${c.number}`;
      const open = this.openCitations.has(id);
      const chip = h(
        "button",
        {
          type: "button",
          class: `citation${open ? " open" : ""}`,
          "data-testid": "citation",
          "data-number": String(c.number),
          "data-source": c.source,
          "aria-expanded": String(open),
          title: `${citationSource(c)} · score ${c.score.toFixed(2)}`,
        },
        h("span", { class: "n" }, `[${c.number}]`),
        ` ${c.source || c.collection}`,
      );
      chip.addEventListener("click", () => {
        if (this.openCitations.has(id)) this.openCitations.delete(id);
        else this.openCitations.add(id);
        this.render();
      });
      return chip;
    });
    const passages = citations
      .filter((c) => this.openCitations.has(`${key}#${c.number}`))
      .map((c) =>
        h(
          "blockquote",
          { class: "citation-passage", "data-testid": "citation-passage", "data-number": String(c.number) },
          h(
            "div",
            { class: "citation-source", "data-testid": "citation-source" },
            `[${c.number}] ${citationSource(c)} · score ${c.score.toFixed(2)}`,
          ),
          h("div", { class: "citation-text", "data-testid": "citation-text" }, c.passage),
        ),
      );
    return h("div", { class: "citations", "data-testid": "citations" }, h("div", { class: "chips" }, ...chips), ...passages);
  }

  private async resolveUser(name: string): Promise<string | null> {
    if (UUID_PATTERN.test(name)) return name;
    const unknown = `There is no user named “${name}”.`;
    try {
      const reply = await this.api.call(() => this.api.session.lookupUsers({ usernames: [name] }));
      const user = reply.users.find((u) => u.username === name);
      if (!user) {
        this.setError(unknown);
        return null;
      }
      this.names.set(user.userId, user.displayName || user.username);
      return user.userId;
    } catch (e) {
      const code = codeOf(e);
      if (code === Code.Unimplemented) {
        this.setError("This server cannot look up usernames; enter the person's user id instead.");
        return null;
      }
      if (code === Code.InvalidArgument) {
        this.setError(unknown);
        return null;
      }
      throw e;
    }
  }

  /** Fetches the names of members not seen yet. */
  private async loadNames(): Promise<void> {
    const missing = this.peerIds().filter((id) => !this.names.has(id));
    if (missing.length === 0) return;
    try {
      for (let i = 0; i < missing.length; i += 100) {
        const ids = missing.slice(i, i + 100);
        const reply = await this.api.call(() => this.api.session.lookupUsers({ userIds: ids }));
        for (const u of reply.users) this.names.set(u.userId, u.displayName || u.username);
      }
    } catch {
      // Names are a nicety: ids (or the members' own names) are shown until they load.
    }
    this.render();
  }

  private async startChat(name: string): Promise<boolean> {
    if (!name) return false;
    this.clearError();
    try {
      const peer = await this.resolveUser(name.toLowerCase());
      if (!peer) return false;
      if (peer === this.me) {
        this.setError("That is you. Start a chat with someone else.");
        return false;
      }
      const reply = await this.api.call(() =>
        this.api.history.createConversation({ kind: ConversationKind.DIRECT, peerUserId: peer }),
      );
      if (!reply.conversation) return false;
      const view = this.putConversation(reply.conversation);
      await Promise.all([this.loadPresence().catch(() => undefined), this.loadNames()]);
      await this.open(view.id);
      return true;
    } catch (e) {
      this.showError("create", e);
      return false;
    }
  }

  private async openAssistant(): Promise<void> {
    this.clearError();
    const existing = [...this.conversations.values()].find((c) => c.kind === ConversationKind.ASSISTANT);
    if (existing) return this.open(existing.id);
    try {
      const reply = await this.api.call(() =>
        this.api.history.createConversation({ kind: ConversationKind.ASSISTANT }),
      );
      if (reply.conversation) await this.open(this.putConversation(reply.conversation).id);
    } catch (e) {
      this.showError("create", e);
    }
  }

  private async send(): Promise<void> {
    const id = this.openId;
    const text = this.els.input.value;
    if (!id || !text.trim()) return;
    const conv = this.conversations.get(id);
    const thread = this.thread(id);
    if (conv?.kind === ConversationKind.ASSISTANT && thread.streaming && !thread.streaming.done) {
      this.setError("Wait for the assistant to finish, or stop it.");
      return;
    }
    this.clearError();
    const clientMessageId = uuid();
    const optimistic = {
      key: `c:${clientMessageId}`,
      sequence: 0n,
      messageId: "",
      clientMessageId,
      authorUserId: this.me,
      fromAssistant: false,
      text,
      createdAt: Date.now(),
      deleted: false,
      edited: false,
      pending: true,
      delivery: 0,
      citations: [],
    };
    thread.messages.set(optimistic.key, optimistic);
    this.els.input.value = "";
    this.render(true);
    this.lastTypingSent = 0;
    void this.api.presence.setTyping({ conversationId: id, typing: false }).catch(() => undefined);
    try {
      const reply = await this.api.call(() =>
        this.api.history.sendMessage({ conversationId: id, clientMessageId, text }),
      );
      if (reply.message) {
        const view = messageView(reply.message);
        upsert(thread, view);
        this.touch(id, view);
      }
      this.render();
      if (conv?.kind === ConversationKind.ASSISTANT) void this.reply(id);
    } catch (e) {
      thread.messages.delete(optimistic.key);
      // Give the text back, so nothing typed is lost.
      if (!this.els.input.value) this.els.input.value = text;
      this.showError("send", e);
      this.render();
    }
  }

  private async reply(id: string): Promise<void> {
    const thread = this.thread(id);
    const requestId = `web-${uuid()}`;
    const controller = new AbortController();
    this.replyAbort = controller;
    thread.streaming = {
      requestId,
      text: "",
      mine: true,
      stopped: false,
      stopping: false,
      done: false,
      after: newestSequence(thread),
      citations: [],
    };
    this.render(true);
    let storedId = "";
    try {
      const stream = this.api.inference.reply(
        { conversationId: id, requestId, sampling: { maxTokens: REPLY_MAX_TOKENS }, collections: this.chosenFor(id) },
        { signal: controller.signal },
      );
      for await (const chunk of stream) {
        if (chunk.chunk.case === "token") {
          thread.streaming.text += chunk.chunk.value.text;
          this.render();
        } else if (chunk.chunk.case === "citations") {
          thread.streaming.citations = chunk.chunk.value.citations.map(citationView);
          this.render();
        } else if (chunk.chunk.case === "finished") {
          const f = chunk.chunk.value;
          // Stop may come too late: a reply that finished on its own is stored and shown.
          thread.streaming.stopped = f.reason === FinishReason.CANCELLED;
          storedId = f.assistantMessageId;
        }
      }
    } catch (e) {
      if (controller.signal.aborted || codeOf(e) === Code.Canceled) thread.streaming.stopped = true;
      else this.showError("reply", e);
    } finally {
      this.replyAbort = null;
      this.endedReplies.add(requestId);
      thread.streaming.done = true;
      if (!thread.streaming.stopped) {
        // The stored reply replaces the streamed text (it also comes on the stream).
        if (!storedId || !thread.messages.has(storedId)) await this.loadNewest(id);
        thread.streaming = null;
      }
      this.render(true);
    }
  }

  private async stopReply(): Promise<void> {
    const id = this.openId;
    if (!id) return;
    const streaming = this.thread(id).streaming;
    if (!streaming || streaming.done) return;
    const controller = this.replyAbort;
    streaming.stopping = true;
    this.render();
    try {
      // The stream then ends with Finished(CANCELLED), which marks the reply stopped.
      await this.api.call(() => this.api.inference.cancel({ requestId: streaming.requestId }));
    } catch {
      controller?.abort(); // going away stops the generation too
      return;
    }
    // Should the stream linger, leave it.
    window.setTimeout(() => {
      if (!streaming.done && controller) controller.abort();
    }, 2_000);
  }

  private onTyping(): void {
    const id = this.openId;
    const conv = id ? this.conversations.get(id) : undefined;
    if (!id || conv?.kind !== ConversationKind.DIRECT || !this.els.input.value) return;
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_REPEAT_MS) return;
    this.lastTypingSent = now;
    void this.api.presence.setTyping({ conversationId: id, typing: true }).catch(() => undefined);
  }

  private markReadSoon(): void {
    const id = this.openId;
    if (!id || this.markingRead || !this.shown || document.visibilityState !== "visible") return;
    const conv = this.conversations.get(id);
    const thread = this.threads.get(id);
    if (!conv || !thread?.loaded) return;
    const newest = newestSequence(thread);
    if (newest === 0n || newest <= conv.readSequence) return;
    this.markingRead = true;
    this.api
      .call(() => this.api.history.markRead({ conversationId: id, sequence: newest }))
      .then((reply) => {
        conv.readSequence = reply.readSequence > conv.readSequence ? reply.readSequence : conv.readSequence;
        conv.unread = reply.unreadCount;
        this.render();
      })
      .catch(() => undefined)
      .finally(() => {
        this.markingRead = false;
        if (newestSequence(thread) > conv.readSequence) window.setTimeout(() => this.markReadSoon(), 200);
      });
  }

  private async logout(): Promise<void> {
    try {
      await this.api.session.logout({});
    } catch {
      // The tokens are dropped here either way.
    }
    localStorage.setItem(`chatmesh.device.${this.auth.username}`, this.auth.deviceId);
    this.api.auth.set(null);
    this.onLogout();
  }

  // -- events -----------------------------------------------------------------------

  private onEvent(event: Event): void {
    const k = event.kind;
    switch (k.case) {
      case "messageCreated":
      case "messageEdited":
      case "messageDeleted": {
        const m = k.value.message;
        if (!m) return;
        const view = messageView(m);
        const conv = this.conversations.get(m.conversationId);
        if (!conv) {
          void this.loadConversations(); // a chat someone else started
          return;
        }
        const thread = this.thread(m.conversationId);
        if (thread.loaded) upsert(thread, view);
        if (k.case === "messageCreated") {
          const mine = view.authorUserId === this.me && !view.fromAssistant;
          // Only news counts: a replayed event the recent-chats read already has does not.
          const news = !conv.lastMessage || view.sequence > conv.lastMessage.sequence;
          const seen = m.conversationId === this.openId && document.visibilityState === "visible" && this.shown;
          if (!mine && news && !seen && view.sequence > conv.readSequence) conv.unread += 1n;
          this.touch(m.conversationId, view);
          this.typing.get(m.conversationId)?.delete(view.authorUserId);
          if (view.fromAssistant && thread.streaming && !thread.streaming.mine) {
            this.endedReplies.add(thread.streaming.requestId);
            thread.streaming = null;
          }
          if (m.conversationId === this.openId) this.markReadSoon();
        }
        break;
      }
      case "readReceipt": {
        const r = k.value;
        const conv = this.conversations.get(r.conversationId);
        if (r.userId === this.me) {
          if (conv && r.readSequence > conv.readSequence) {
            conv.readSequence = r.readSequence;
            const last = conv.lastMessage?.sequence ?? 0n;
            conv.unread = last > r.readSequence ? last - r.readSequence : 0n;
          }
        } else {
          const t = this.thread(r.conversationId);
          if (r.readSequence > t.peerRead) t.peerRead = r.readSequence;
          if (r.readSequence > t.peerDelivered) t.peerDelivered = r.readSequence;
        }
        break;
      }
      case "deliveryReceipt": {
        const r = k.value;
        if (r.userId === this.me) break;
        const t = this.thread(r.conversationId);
        if (r.deliveredSequence > t.peerDelivered) t.peerDelivered = r.deliveredSequence;
        break;
      }
      case "typing": {
        const t = k.value;
        if (t.userId === this.me) break;
        let who = this.typing.get(t.conversationId);
        if (!who) {
          who = new Map();
          this.typing.set(t.conversationId, who);
        }
        if (t.typing) {
          const until = Date.now() + (t.expiresInMs || 5_000);
          who.set(t.userId, until);
          window.setTimeout(() => this.render(), until - Date.now() + 50);
        } else {
          who.delete(t.userId);
        }
        break;
      }
      case "presenceChanged":
        if (k.value.presence) this.presence.set(k.value.presence.userId, k.value.presence);
        break;
      case "assistantToken": {
        const tok = k.value;
        const thread = this.thread(tok.conversationId);
        if (thread.streaming?.mine && thread.streaming.requestId === tok.requestId) break;
        // The reply is stored (or stopped) and shown already: its last tokens, which can come
        // on the Connect stream after that, must not open an empty bubble under it.
        if (this.endedReplies.has(tok.requestId)) break;
        if (!thread.streaming || thread.streaming.requestId !== tok.requestId) {
          thread.streaming = {
            requestId: tok.requestId,
            text: "",
            mine: false,
            stopped: false,
            stopping: false,
            done: false,
            after: newestSequence(thread),
            citations: [],
          };
        }
        thread.streaming.text += tok.text;
        if (tok.done) {
          thread.streaming.done = true;
          const s = thread.streaming;
          // The stored reply arrives as MessageCreated; a cancelled one never does.
          window.setTimeout(() => {
            if (thread.streaming === s) {
              this.endedReplies.add(s.requestId);
              thread.streaming = null;
              this.render();
            }
          }, 3_000);
        }
        break;
      }
      case "resyncRequired":
        // Too much was missed to replay: read everything again.
        for (const t of this.threads.values()) t.loaded = false;
        this.threads.clear();
        void this.onLive(true);
        break;
      default:
        break;
    }
    this.render();
  }

  private touch(id: string, m: ReturnType<typeof messageView>): void {
    const conv = this.conversations.get(id);
    if (!conv) return;
    if (!conv.lastMessage || m.sequence >= conv.lastMessage.sequence) {
      conv.lastMessage = m;
      conv.activity = m.createdAt;
    }
    if (m.authorUserId === this.me && !m.fromAssistant && m.sequence > conv.readSequence) {
      conv.readSequence = m.sequence; // the author has read their own message
    }
  }

  // -- errors -----------------------------------------------------------------------

  private showError(action: Action, e: unknown): void {
    this.setError(describeError(action, e));
  }

  private setError(text: string): void {
    this.els.error.textContent = text;
    this.els.error.hidden = false;
  }

  private clearError(): void {
    this.els.error.textContent = "";
    this.els.error.hidden = true;
  }

  // -- rendering --------------------------------------------------------------------

  private stickToBottom = false;

  /** Renders on the next microtask (many events in a row render once). */
  private render(toBottom = false): void {
    if (toBottom) this.stickToBottom = true;
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => this.renderNow());
  }

  private renderNow(): void {
    this.renderQueued = false;
    const e = this.els;
    e.conn.textContent = this.connection;
    e.conn.dataset.state = this.connection;
    this.renderList();
    const conv = this.openId ? this.conversations.get(this.openId) : undefined;
    e.chat.classList.toggle("empty", !conv);
    if (!conv) return;
    e.collections.hidden = conv.kind !== ConversationKind.ASSISTANT;
    if (conv.kind === ConversationKind.ASSISTANT) this.renderPicker(conv.id);
    const thread = this.thread(conv.id);
    e.title.textContent = this.title(conv);
    this.renderPresence(conv);
    this.renderTyping(conv);
    const box = e.messages;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const rows: HTMLElement[] = [];
    if (thread.olderToken) rows.push(e.older);
    for (const m of ordered(thread)) {
      const mine = m.authorUserId === this.me && !m.fromAssistant;
      const tick = mine ? tickOf(thread, m) : null;
      const meta = h("span", { class: "meta" }, new Date(m.createdAt).toLocaleTimeString([], { timeStyle: "short" }));
      if (m.edited && !m.deleted) meta.append(" · edited");
      if (tick) meta.append(h("span", { class: `tick ${tick}`, title: tick }, TICKS[tick]));
      rows.push(
        h(
          "div",
          {
            class: `msg ${mine ? "mine" : "theirs"}${m.fromAssistant ? " assistant" : ""}${m.deleted ? " deleted" : ""}`,
            "data-testid": "message",
            "data-sequence": String(m.sequence),
            "data-state": tick ?? "",
          },
          h("span", { class: "text", "data-testid": "message-text" }, m.deleted ? "message deleted" : m.text),
          m.deleted ? "" : this.citationsOf(m.key, m.citations),
          meta,
        ),
      );
    }
    const s = thread.streaming;
    // A finished reply's bubble is gone once the stored message shows; one with no text
    // at all is never drawn (nothing to show, and it would sit empty under the reply).
    // Nor is one whose reply is stored and shown already (the stored message can come on the
    // Connect stream before the Reply stream ends): one copy of the reply, never two.
    const stored = s && !s.stopped && ordered(thread).some((m) => m.fromAssistant && m.sequence > s.after);
    const showStreaming = s && !stored && !(s.done && !s.stopped && s.text.trim() === "");
    if (s && showStreaming) {
      const label = s.stopped ? "stopped" : s.done ? "" : "…";
      rows.push(
        h(
          "div",
          { class: "msg theirs assistant streaming", "data-testid": "assistant-streaming", "data-stopped": String(s.stopped) },
          h("span", { class: "text" }, s.text),
          this.citationsOf(`r:${s.requestId}`, s.citations),
          h("span", { class: "meta", "data-testid": s.stopped ? "assistant-stopped" : "assistant-status" }, label),
        ),
      );
    }
    box.replaceChildren(...rows);
    e.stop.hidden = !(s && !stored && s.mine && !s.done && !s.stopped && !s.stopping);
    if (this.stickToBottom || atBottom) box.scrollTop = box.scrollHeight;
    this.stickToBottom = false;
  }

  private renderList(): void {
    const items = [...this.conversations.values()].sort((a, b) => b.activity - a.activity);
    this.els.list.replaceChildren(
      ...items.map((c) => {
        const last = c.lastMessage;
        const preview = last ? (last.deleted ? "message deleted" : last.text) : "No messages yet";
        const peer = peersOf(c, this.me)[0];
        const dot = peer ? presenceClass(this.presence.get(peer.userId)) : c.kind === ConversationKind.ASSISTANT ? "bot" : "";
        const li = h(
          "li",
          {
            class: `conversation${c.id === this.openId ? " open" : ""}`,
            "data-testid": "conversation",
            "data-conversation-id": c.id,
            "data-title": this.title(c),
          },
          h("span", { class: `dot ${dot}` }),
          h(
            "div",
            { class: "summary" },
            h("span", { class: "name" }, this.title(c)),
            h("span", { class: "preview", "data-testid": "preview" }, preview),
          ),
          c.unread > 0n ? h("span", { class: "unread", "data-testid": "unread" }, String(c.unread)) : "",
        );
        li.addEventListener("click", () => void this.open(c.id));
        return li;
      }),
    );
  }

  private title(c: ConversationView): string {
    return titleOf(c, this.me, this.names);
  }

  private renderPresence(c: ConversationView): void {
    const el = this.els.presence;
    if (c.kind === ConversationKind.ASSISTANT) {
      el.replaceChildren(h("span", { class: "dot bot" }), "local model");
      el.dataset.state = "assistant";
      return;
    }
    const peer = peersOf(c, this.me)[0];
    const p = peer ? this.presence.get(peer.userId) : undefined;
    const cls = presenceClass(p);
    let text = "offline";
    if (p?.state === PresenceState.ONLINE) text = "online";
    else if (p?.state === PresenceState.AWAY) text = "away";
    else if (p?.lastSeenAt) text = `last seen ${relativeTime(millis(p.lastSeenAt))}`;
    el.replaceChildren(h("span", { class: `dot ${cls}` }), text);
    el.dataset.state = cls;
  }

  private renderTyping(c: ConversationView): void {
    const who = this.typing.get(c.id);
    const now = Date.now();
    const names: string[] = [];
    for (const [userId, until] of who ?? []) {
      if (until > now) names.push(this.names.get(userId) || c.members.find((m) => m.userId === userId)?.displayName || "someone");
    }
    this.els.typing.textContent = names.length ? `${names.join(", ")} is typing…` : "";
  }
}

const TICKS = { pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓" } as const;

function presenceClass(p: UserPresence | undefined): string {
  if (p?.state === PresenceState.ONLINE) return "online";
  if (p?.state === PresenceState.AWAY) return "away";
  return "offline";
}

/** "notes › topics.md · passage 2": where a cited passage comes from. */
function citationSource(c: CitationView): string {
  const where = c.offset > 0n ? ` · passage ${c.offset}` : "";
  return `${c.collection} › ${c.source || "untitled"}${where}`;
}

function loadChosen(): [string, Set<string>][] {
  try {
    const raw = JSON.parse(window.localStorage.getItem(CHOSEN_KEY) ?? "{}") as Record<string, unknown>;
    return Object.entries(raw)
      .filter((e): e is [string, string[]] => Array.isArray(e[1]))
      .map(([id, names]) => [id, new Set(names.filter((n) => typeof n === "string"))]);
  } catch {
    return [];
  }
}

function saveChosen(chosen: Map<string, Set<string>>): void {
  const out: Record<string, string[]> = {};
  for (const [id, names] of chosen) if (names.size) out[id] = [...names];
  try {
    window.localStorage.setItem(CHOSEN_KEY, JSON.stringify(out));
  } catch {
    // Private mode: the choice lasts for this page only.
  }
}
