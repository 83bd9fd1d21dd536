#include "net/migration/migration_journal.h"

#include <gtest/gtest.h>

namespace migratefs::migration {
namespace {

TEST(MigrationJournal, RoundTripsEveryField) {
  JournalDoc doc;
  doc.instance_id = std::string("\x00\xff\x10id", 5);
  doc.next_id = 42;
  StartRequest r;
  r.images = {"vm1/a.img", "vm1/b.img"};
  r.target = "10.0.0.2:7000";
  r.network_kbps = 1000;
  r.disk_kbps = 7;
  r.overwrite = true;
  r.force = true;
  r.dscp = 34;
  r.so_priority = 6;
  r.mirror.async = true;
  r.mirror.backlog_max_bytes = 1 << 20;
  r.mirror.backlog_low_pct = 10;
  r.mirror.backlog_high_pct = 80;
  r.copy.hybrid = true;
  r.copy.precopy_pct = 35;
  r.copy.postcopy_timeout_s = 90;
  doc.running.push_back({"m41", r, 3, true});
  doc.running.push_back({"m7", StartRequest{{"x"}, "h:1"}});

  auto back = DecodeJournal(EncodeJournal(doc));
  ASSERT_TRUE(back.ok()) << back.error().message;
  const JournalDoc& d = back.value();
  EXPECT_EQ(d.instance_id, doc.instance_id);
  EXPECT_EQ(d.next_id, 42u);
  ASSERT_EQ(d.running.size(), 2u);
  const StartRequest& b = d.running[0].request;
  EXPECT_EQ(d.running[0].id, "m41");
  EXPECT_EQ(d.running[0].resumed, 3u);
  EXPECT_TRUE(d.running[0].postcopy);
  EXPECT_FALSE(d.running[1].postcopy);
  EXPECT_EQ(b.images, r.images);
  EXPECT_EQ(b.target, r.target);
  EXPECT_EQ(b.network_kbps, 1000u);
  EXPECT_EQ(b.disk_kbps, 7u);
  EXPECT_TRUE(b.overwrite);
  EXPECT_TRUE(b.force);
  EXPECT_EQ(b.dscp, std::optional<uint8_t>(34));
  EXPECT_EQ(b.so_priority, std::optional<uint32_t>(6));
  EXPECT_TRUE(b.mirror.async);
  EXPECT_EQ(b.mirror.backlog_max_bytes, 1u << 20);
  EXPECT_EQ(b.mirror.backlog_low_pct, 10u);
  EXPECT_EQ(b.mirror.backlog_high_pct, 80u);
  EXPECT_TRUE(b.copy.hybrid);
  EXPECT_EQ(b.copy.precopy_pct, 35u);
  EXPECT_EQ(b.copy.postcopy_timeout_s, 90u);
  EXPECT_FALSE(d.running[1].request.dscp.has_value());
  EXPECT_FALSE(d.running[1].request.copy.hybrid);
}

TEST(MigrationJournal, EmptyIsNothingAndGarbageIsAnError) {
  auto empty = DecodeJournal("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty.value().running.empty());
  EXPECT_FALSE(DecodeJournal("{").ok());
  EXPECT_FALSE(DecodeJournal(R"({"version":2})").ok());
  EXPECT_FALSE(DecodeJournal(R"({"version":1,"instance_id":"zz","next_id":1,"running":[]})").ok());
}

}  // namespace
}  // namespace migratefs::migration
