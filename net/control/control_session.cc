#include "net/control/control_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "migratefs/control_protocol.h"
#include "net/control/dispatch.h"

namespace migratefs::control {

namespace asio = boost::asio;
using boost::system::error_code;
using nlohmann::json;

// --- SessionRegistry ---

void SessionRegistry::Add(const std::shared_ptr<Session>& session) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_[session.get()] = session;
}

void SessionRegistry::Remove(const Session* session) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(session);
}

size_t SessionRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

std::vector<std::shared_ptr<Session>> SessionRegistry::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Session>> alive;
  for (const auto& [key, weak] : sessions_) {
    if (auto session = weak.lock()) alive.push_back(std::move(session));
  }
  return alive;
}

// --- Session ---

namespace {

bool IsBlank(std::string_view line) {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

Error TooLarge() {
  return MakeError(errc::kTooLarge, "request line longer than " +
                                        std::to_string(kMaxRequestLineBytes) +
                                        " bytes; closing the connection");
}

}  // namespace

Session::Session(SessionEnvironment& env, Socket socket)
    : env_(env), socket_(std::move(socket)), deadline_timer_(env.io) {}

Session::~Session() { env_.registry.Remove(this); }

void Session::Begin() {
  env_.registry.Add(shared_from_this());
  ProcessBuffered();  // empty buffer: arms the idle deadline and starts reading
}

void Session::Close() {
  if (closed_) return;
  closed_ = true;
  env_.registry.Remove(this);
  subscription_.reset();  // the service stops calling our sink before this returns
  error_code ignored;
  socket_.shutdown(Socket::shutdown_both, ignored);
  socket_.close(ignored);
  deadline_timer_.cancel();
}

void Session::ReadMore() {
  socket_.async_read_some(asio::buffer(chunk_),
                          [self = shared_from_this()](const error_code& ec, size_t n) {
                            self->OnRead(ec, n);
                          });
}

void Session::OnRead(const error_code& ec, size_t n) {
  if (closed_) return;
  if (ec) {  // EOF or reset: the client is gone
    Close();
    return;
  }
  if (streaming_) {  // an events stream reads only to notice the hang-up
    ReadMore();
    return;
  }
  buffer_.append(chunk_.data(), n);
  ProcessBuffered();
}

void Session::ProcessBuffered() {
  while (!closed_) {
    size_t newline = buffer_.find('\n');
    if (newline == std::string::npos) {
      // +1: a maximal line may still be followed by '\r' before its '\n'.
      if (buffer_.size() > kMaxRequestLineBytes + 1) {
        SendAnswer(ErrorAnswer(TooLarge(), std::nullopt), /*close_after=*/true);
        return;
      }
      if (buffer_.empty()) {
        partial_line_since_.reset();
        SetDeadline(env_.options.idle_timeout.count() > 0
                        ? Clock::now() + env_.options.idle_timeout
                        : Clock::time_point::max());
      } else {
        if (!partial_line_since_) partial_line_since_ = Clock::now();
        SetDeadline(*partial_line_since_ + env_.options.line_timeout);
      }
      ReadMore();
      return;
    }
    partial_line_since_.reset();
    if (newline > kMaxRequestLineBytes + 1) {
      SendAnswer(ErrorAnswer(TooLarge(), std::nullopt), /*close_after=*/true);
      return;
    }
    std::string line = buffer_.substr(0, newline);
    buffer_.erase(0, newline + 1);
    if (IsBlank(line)) continue;  // not a request; tolerated from interactive users
    RunLine(line);
    return;  // the answer's completion comes back here for the next line
  }
}

void Session::RunLine(std::string_view line) {
  ParsedRequest parsed = ParseRequest(line);
  if (!parsed.command) {
    const Error& error = parsed.command.error();
    SendAnswer(ErrorAnswer(error, parsed.tag), /*close_after=*/error.code == errc::kTooLarge);
    return;
  }
  Command& command = parsed.command.value();
  if (std::holds_alternative<EventsCommand>(command)) {
    StartEvents(parsed.tag);
    return;
  }
  if (!IsSlow(command) && !IsLong(command)) {
    SendAnswer(Execute(command, env_.service, parsed.tag), /*close_after=*/false);
    return;
  }
  const bool long_job = IsLong(command);
  const unsigned long_cap = std::max(1u, env_.options.long_threads);
  if (long_job && env_.long_running.fetch_add(1) >= long_cap) {
    env_.long_running.fetch_sub(1);
    SendAnswer(ErrorAnswer(MakeError(errc::kBusy, std::to_string(long_cap) +
                                                      " profiles are running already; try again when one ends"),
                           parsed.tag),
               /*close_after=*/false);
    return;
  }
  // finish / verify: the service may wait on the peer; profile waits for as long as
  // asked. No deadline while it works; the client is waiting for us, not the other way
  // round.
  SetDeadline(Clock::time_point::max());
  asio::post(long_job ? env_.long_workers : env_.workers,
             [self = shared_from_this(), command = std::move(command), tag = std::move(parsed.tag), long_job]() mutable {
               json answer = Execute(command, self->env_.service, tag);
               if (long_job) self->env_.long_running.fetch_sub(1);
               asio::post(self->env_.io, [self, answer = std::move(answer)] {
                 self->SendAnswer(answer, /*close_after=*/false);
               });
             });
}

void Session::SendAnswer(const json& answer, bool close_after) {
  if (closed_) return;
  auto line = std::make_shared<std::string>(ToLine(answer));
  SetDeadline(Clock::now() + env_.options.write_timeout);
  asio::async_write(socket_, asio::buffer(*line),
                    [self = shared_from_this(), line, close_after](const error_code& ec, size_t) {
                      if (self->closed_) return;
                      if (ec || close_after) {
                        self->Close();
                        return;
                      }
                      self->ProcessBuffered();
                    });
}

void Session::StartEvents(const Tag& tag) {
  streaming_ = true;
  buffer_.clear();  // anything pipelined after `events` is ignored
  events_ = std::make_shared<EventQueue>(env_.options.max_queued_events);

  std::weak_ptr<Session> weak = shared_from_this();
  auto queue = events_;
  auto io = env_.io.get_executor();
  try {
    subscription_ = env_.service.Subscribe([queue, weak, io](const Event& event) {
      if (queue->Push(ToLine(EventLine(event)))) {
        asio::post(io, [weak] {
          if (auto self = weak.lock()) self->DrainEvents();
        });
      }
    });
  } catch (const std::exception& e) {
    subscription_.reset();
    spdlog::warn("control: Subscribe failed: {}", e.what());
  }
  if (!subscription_) {
    SendAnswer(ErrorAnswer(MakeError(errc::kInternal, "cannot subscribe to events"), tag),
               /*close_after=*/true);
    return;
  }

  // The acknowledgement goes first; events that arrive meanwhile wait in the queue.
  writing_ = true;
  in_flight_ = ToLine(OkAnswer({{"events", true}}, tag));
  SetDeadline(Clock::now() + env_.options.write_timeout);
  asio::async_write(socket_, asio::buffer(in_flight_),
                    [self = shared_from_this()](const error_code& ec, size_t) {
                      if (self->closed_) return;
                      self->writing_ = false;
                      if (ec) {
                        self->Close();
                        return;
                      }
                      self->DrainEvents();
                    });
  ReadMore();
}

void Session::DrainEvents() {
  if (closed_) return;
  // Unsubscribe as soon as the reader is known to be too slow, even while a write to it
  // is stuck; the final error line follows when (if) that write completes.
  if (events_->overflowed()) subscription_.reset();
  if (writing_) return;
  EventQueue::Batch batch = events_->Take();
  if (batch.lines.empty() && !batch.overflowed) {
    SetDeadline(Clock::time_point::max());  // an idle stream is fine
    return;
  }
  bool close_after = batch.overflowed;
  if (batch.overflowed) {
    batch.lines += ToLine(ErrorAnswer(
        MakeError(errc::kTooLarge,
                  "events reader too slow: more than " +
                      std::to_string(env_.options.max_queued_events) +
                      " events queued; events were lost, subscribe again"),
        std::nullopt));
  }
  writing_ = true;
  in_flight_ = std::move(batch.lines);
  SetDeadline(Clock::now() + env_.options.write_timeout);
  asio::async_write(socket_, asio::buffer(in_flight_),
                    [self = shared_from_this(), close_after](const error_code& ec, size_t) {
                      if (self->closed_) return;
                      self->writing_ = false;
                      if (ec || close_after) {
                        self->Close();
                        return;
                      }
                      self->DrainEvents();
                    });
}

void Session::SetDeadline(Clock::time_point deadline) {
  deadline_ = deadline;
  if (deadline == Clock::time_point::max()) {
    deadline_timer_.cancel();
    return;
  }
  deadline_timer_.expires_at(deadline);  // cancels the previous wait
  deadline_timer_.async_wait(
      [self = shared_from_this()](const error_code& ec) { self->OnDeadline(ec); });
}

void Session::OnDeadline(const error_code& ec) {
  if (ec == asio::error::operation_aborted || closed_) return;
  // A wait that completed just before the deadline moved later is not a timeout.
  if (Clock::now() < deadline_) return;
  spdlog::debug("control: dropping a connection that stalled (partial line, unread answer "
                "or idle)");
  Close();
}

}  // namespace migratefs::control
